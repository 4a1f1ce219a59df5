"""Password hashing (Argon2id) with injectable cost parameters.

Production uses :data:`STANDARD`, argon2-cffi's RFC 9106 "low memory" profile (t=3, m=64 MiB, p=4).
Test suites inject :data:`FAST_FOR_TESTS` (through ``GatewaySettings.password_hashing`` or
``VIGIL_PASSWORD_HASHING=fast-for-tests``) so that a sign-in costs microseconds instead of a
second; :class:`GatewaySettings` refuses anything weaker than :data:`STANDARD` in production.
Stored hashes carry their own parameters, so a hash made with either still verifies with the other,
and :meth:`Passwords.needs_rehash` upgrades a weaker one on the next successful sign-in.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass


@dataclass(frozen=True)
class PasswordHashing:
    """Argon2id cost parameters. ``memory_cost`` is in KiB."""

    time_cost: int = 3
    memory_cost: int = 64 * 1024
    parallelism: int = 4
    hash_len: int = 32
    salt_len: int = 16

    def at_least(self, other: PasswordHashing) -> bool:
        """Whether every cost parameter is at least ``other``'s."""
        return (
            self.time_cost >= other.time_cost
            and self.memory_cost >= other.memory_cost
            and self.parallelism >= other.parallelism
            and self.hash_len >= other.hash_len
            and self.salt_len >= other.salt_len
        )


STANDARD = PasswordHashing()
"""Production parameters: RFC 9106 low-memory profile (argon2-cffi's defaults)."""

FAST_FOR_TESTS = PasswordHashing(time_cost=1, memory_cost=8, parallelism=1)
"""Tests only: the cheapest Argon2id parameters (same hash and salt length). Refused in production."""

HASHING_CHOICES = {"standard": STANDARD, "fast-for-tests": FAST_FOR_TESTS}
"""Values of ``VIGIL_PASSWORD_HASHING``."""


class Passwords:
    """Hashes and verifies passwords with one set of parameters."""

    def __init__(self, parameters: PasswordHashing = STANDARD):
        # argon2 where passwords are hashed (the web process, create-admin): the settings name these
        # parameters in every gateway process, and the worker and delivery process hash none (issue 10)
        from argon2 import PasswordHasher, Type  # noqa: PLC0415

        self.parameters = parameters
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost,
            parallelism=parameters.parallelism,
            hash_len=parameters.hash_len,
            salt_len=parameters.salt_len,
            type=Type.ID,
        )
        # Verified when the username is unknown, so a wrong username costs as much time as a wrong password.
        self._dummy_hash = self._hasher.hash(secrets.token_urlsafe(16))

    def hash(self, password: str) -> str:
        return self._hasher.hash(password)

    def matches(self, stored_hash: str | None, password: str) -> bool:
        """Constant-time whatever the user: a missing hash (unknown username) is checked against a dummy."""
        from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError  # noqa: PLC0415

        try:
            self._hasher.verify(stored_hash if stored_hash is not None else self._dummy_hash, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
