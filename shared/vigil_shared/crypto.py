"""Encryption at rest for confidential fields, with keys that rotate without downtime.

- ``encrypt``/``decrypt``: Fernet (AES-128-CBC + HMAC-SHA256) through MultiFernet. The first key
  of ``VIGIL_<SERVICE>_ENCRYPTION_KEYS`` encrypts; every listed key decrypts. To rotate: put a new
  key first and keep the old ones, restart, run ``vigil-<service> rotate-keys`` (re-encrypts every
  row under the new key), then drop the old keys.
- ``blind_index``: a keyed HMAC of the normalised value, stored beside the ciphertext, so equality
  lookups (duplicate SSN) need no decryption. Its key (``VIGIL_<SERVICE>_BLIND_INDEX_KEY``) does
  not rotate with the encryption keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING, TypeVar

# cryptography is imported on first use: its compiled core adds about 8 MB to a process's memory, and
# most relays, workers and beats never encrypt or decrypt anything (bench/bench_idle_rss.py).
if TYPE_CHECKING:
    from cryptography.fernet import Fernet, MultiFernet


# a value or None: what goes in comes out (a str gives a str, None gives None)
Text = TypeVar("Text", str, None, str | None)


class DecryptionError(Exception):
    """A stored value could not be decrypted with any configured key."""


def generate_key() -> str:
    from cryptography.fernet import Fernet  # noqa: PLC0415 - lazy, see above

    return Fernet.generate_key().decode()


def _checked_key(key: str | bytes) -> bytes:
    """``key`` as Fernet takes it, refused here as Fernet would refuse it (32 url-safe base64 bytes), so
    a wrong key still fails when the process starts, not at its first encryption."""
    raw = key.encode() if isinstance(key, str) else key
    try:
        decoded = base64.urlsafe_b64decode(raw)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.") from exc
    if len(decoded) != 32:
        raise ValueError("Fernet key must be 32 url-safe base64-encoded bytes.")
    return raw


def digits_only(value: str) -> str:
    return "".join(ch for ch in value if ch.isdigit())


class FieldCipher:
    def __init__(self, keys: list[str] | tuple[str, ...], index_key: str):
        if not keys:
            raise ValueError("at least one encryption key is needed")
        self._keys = [_checked_key(key) for key in keys]
        self._index_key = hashlib.sha256(("vigil-blind-index:" + index_key).encode()).digest()

    @cached_property
    def _fernets(self) -> list[Fernet]:
        from cryptography.fernet import Fernet  # noqa: PLC0415 - lazy, see above

        return [Fernet(key) for key in self._keys]

    @cached_property
    def _multi(self) -> MultiFernet:
        from cryptography.fernet import MultiFernet  # noqa: PLC0415 - lazy, see above

        return MultiFernet(self._fernets)

    def encrypt(self, plaintext: Text) -> Text:
        if plaintext is None:
            return None
        return self._multi.encrypt(plaintext.encode()).decode()

    def decrypt(self, token: Text) -> Text:
        return self._with_any_key(self._multi.decrypt, token)

    def encrypt_bytes(self, data: bytes) -> bytes:
        """A Fernet token (url-safe base64, no line break) of ``data``: a stored file's chunk."""
        return self._multi.encrypt(data)

    def decrypt_bytes(self, token: bytes) -> bytes:
        from cryptography.fernet import InvalidToken  # noqa: PLC0415 - lazy, see above

        try:
            return self._multi.decrypt(token)
        except InvalidToken as exc:
            raise DecryptionError("no configured key decrypts this value") from exc

    def is_current_bytes(self, token: bytes) -> bool:
        return self.is_current(token.decode())

    def is_current(self, token: str) -> bool:
        """True when the primary key encrypted ``token`` (nothing to rotate)."""
        from cryptography.fernet import InvalidToken  # noqa: PLC0415 - lazy, see above

        try:
            self._fernets[0].decrypt(token.encode())
            return True
        except InvalidToken:
            return False

    def rotate(self, token: Text) -> Text:
        """Re-encrypts under the primary key (MultiFernet keeps the original timestamp)."""
        return self._with_any_key(self._multi.rotate, token)

    @staticmethod
    def _with_any_key(operation: Callable[[bytes], bytes], token: Text) -> Text:
        """``operation`` (decrypt or rotate) of ``token`` with whichever configured key made it."""
        if token is None:
            return None
        from cryptography.fernet import InvalidToken  # noqa: PLC0415 - lazy, see above

        try:
            return operation(token.encode()).decode()
        except InvalidToken as exc:
            raise DecryptionError("no configured key decrypts this value") from exc

    def blind_index(
        self, value: str | None, normalize: Callable[[str], str] = lambda v: v.strip().lower()
    ) -> str | None:
        if value is None:
            return None
        normalized = normalize(value)
        if not normalized:
            return None
        digest = hmac.new(self._index_key, normalized.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")
