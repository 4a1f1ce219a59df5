"""How confidential values look to callers without the confidential permission.

Every response, list, export, history entry and event passes confidential values through these,
so a masked value looks the same wherever it appears.
"""

from __future__ import annotations

MASK = "***"


def mask_ssn(value: str | None) -> str | None:
    """``***-**-1234``: the last four digits stay, so staff can confirm a number read to them."""
    if not value:
        return value
    digits = "".join(ch for ch in value if ch.isdigit())
    return f"***-**-{digits[-4:]}" if len(digits) >= 4 else MASK


def mask(value: object) -> str | None:
    """Dates, codes, PINs and passwords: nothing of them shows."""
    return None if value in (None, "") else MASK
