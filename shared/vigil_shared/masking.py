"""How confidential values look to callers without the confidential permission.

Every response, list, export, history entry and event passes confidential values through these,
so a masked value looks the same wherever it appears.
"""

from __future__ import annotations

import re

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


# An outside system's free text (a bureau's reason, a processor's decline message) is stored and shown
# to callers who may not read a confidential value: anything shaped like one is masked first.
_CARD = re.compile(r"(?<!\d)\d(?:[ -]?\d){11,18}(?!\d)")  # 12 to 19 digits, spaced or dashed
_SSN = re.compile(r"(?<!\d)\d{3}[ -]?\d{2}[ -]?\d{4}(?!\d)")


def scrub(text: str | None, *known: str | None) -> str | None:
    """``text`` with every card-number-like and SSN-like run of digits, and each ``known`` value (a
    token, a key sent with the request), replaced by ``***``."""
    if not text:
        return text
    for value in known:
        if value:
            text = text.replace(value, MASK)
    return _SSN.sub(MASK, _CARD.sub(MASK, text))
