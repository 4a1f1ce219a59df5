"""One account whatever the letter case and the spaces around it.

A central station reads an account number off a panel or over the phone: ``acc-1``, ``ACC-1`` and
`` ACC-1 `` are the same account. A property keeps the number as it was typed (trimmed) for display,
and its normalised key in ``account_key``, which is unique and is what every lookup compares.
"""

from __future__ import annotations


def account_key(account_number: str | None) -> str | None:
    """The form two account numbers are compared in: trimmed, upper case (None stays None)."""
    if account_number is None:
        return None
    return account_number.strip().upper()
