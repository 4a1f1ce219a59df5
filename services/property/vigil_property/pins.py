"""Account PINs: checked without ever being stored in clear, shown only to those allowed to see them.

A 4-digit PIN has 10,000 values, so any unkeyed hash (even a slow, salted one) falls to brute force
as soon as the table leaks. The check value is therefore a keyed HMAC (the service's blind-index
key, which is not in the database) over a per-row random salt and the PIN: equal PINs on two
properties do not look equal, and the table alone reveals nothing. Callers holding
``confidential.installation_codes.view`` see the PIN decrypted from a separate Fernet token, which
``vigil-property rotate-keys`` re-encrypts when the encryption keys rotate.
"""

from __future__ import annotations

import hmac
import secrets

from vigil_shared.crypto import FieldCipher

DEFAULT_PIN = "0000"
PIN_PATTERN = r"^[0-9]{4}$"


def _check_value(cipher: FieldCipher, salt: str, pin: str) -> str:
    check = cipher.blind_index(f"{salt}:{pin}", normalize=lambda value: value)
    assert check is not None, "the salt makes the indexed text never empty"
    return check


def seal(cipher: FieldCipher, pin: str) -> dict:
    """The column values that store ``pin``: salt, check value and encrypted copy."""
    salt = secrets.token_hex(16)
    return {"pin_salt": salt, "pin_hash": _check_value(cipher, salt, pin), "pin_encrypted": cipher.encrypt(pin)}


def reveal(cipher: FieldCipher, record) -> str:
    """The PIN in clear, for callers allowed to see it (rows never given one have the default)."""
    if record.pin_encrypted is None:
        return DEFAULT_PIN
    return cipher.decrypt(record.pin_encrypted)


def matches(cipher: FieldCipher, record, candidate: str | None) -> bool:
    """Constant-time check of ``candidate``; ``record`` may be None so unknown accounts cost the same."""
    salt = record.pin_salt if record is not None and record.pin_hash is not None else ""
    expected = (
        record.pin_hash if record is not None and record.pin_hash is not None else _check_value(cipher, "", DEFAULT_PIN)
    )
    given = _check_value(cipher, salt, candidate or "")
    return hmac.compare_digest(expected, given) and record is not None
