"""Users and their credentials. Passwords are hashed with Argon2id and never leave this module."""
from __future__ import annotations

import secrets
from dataclasses import dataclass

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.identity import ALL

from .models import User

_hasher = PasswordHasher()
# Verified when the username is unknown, so a wrong username costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def authenticate(session: Session, username: str, password: str) -> User | None:
    user = session.scalar(select(User).where(User.username == username))
    try:
        _hasher.verify(user.password_hash if user else _DUMMY_HASH, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return None
    if user is None or not user.active:
        return None
    if _hasher.check_needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    return user


def permissions_of(user: User) -> frozenset[str]:
    """The foundation knows admins only; roles and per-location grants come with the identity issue."""
    return frozenset({ALL}) if user.is_admin else frozenset()


@dataclass(frozen=True)
class AdminSetup:
    username: str
    created: bool
    password: str | None  # only when this call set it


def ensure_admin(session: Session, username: str, password: str | None, reset: bool = False) -> AdminSetup:
    """Creates the first admin once; a later call changes nothing unless ``reset`` is asked for."""
    user = session.scalar(select(User).where(User.username == username))
    if user is not None and not reset:
        return AdminSetup(username, created=False, password=None)
    password = password or secrets.token_urlsafe(18)
    if user is None:
        user = User(username=username, name="Administrator", is_admin=True, active=True,
                    password_hash=hash_password(password))
        session.add(user)
        return AdminSetup(username, created=True, password=password)
    user.password_hash = hash_password(password)
    user.active = True
    user.is_admin = True
    return AdminSetup(username, created=False, password=password)
