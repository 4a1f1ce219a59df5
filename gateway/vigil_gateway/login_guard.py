"""Throttling of failed sign-ins: per username, per client address, and account lock-out.

- More than ``failures_per_user_per_minute`` failures for one username in a minute → 429.
- More than ``failures_per_address_per_15min`` failures from one address in 15 minutes → 429.
- ``lockout_threshold`` consecutive failures lock the account for ``lockout_seconds``; while
  locked even the right password is refused (429 with ``Retry-After``).
Counters live in the gateway database so every gateway process shares them.
"""
from __future__ import annotations

import math
from datetime import timedelta

from sqlalchemy.orm import Session

from vigil_shared.db import utcnow
from vigil_shared.errors import Problem

from .models import LoginFailures, User
from .settings import LoginPolicy

USER_WINDOW = timedelta(minutes=1)
ADDRESS_WINDOW = timedelta(minutes=15)


class Throttled(Problem):
    def __init__(self, detail: str, retry_after: float, reason: str):
        seconds = max(1, math.ceil(retry_after))
        super().__init__(429, detail, type="urn:vigil:problem:rate-limited",
                         headers={"Retry-After": str(seconds)}, retry_after=seconds)
        self.reason = reason


def _window(session: Session, key: str, length: timedelta) -> LoginFailures | None:
    row = session.get(LoginFailures, key)
    if row is not None and row.window_start + length <= utcnow():
        return None
    return row


def check(session: Session, policy: LoginPolicy, username: str, address: str | None, user: User | None) -> None:
    """Raises :class:`Throttled` when this attempt must not even be checked."""
    now = utcnow()
    if user is not None and user.locked_until is not None and user.locked_until > now:
        raise Throttled("This account is locked after repeated failed sign-ins. Try again later.",
                        (user.locked_until - now).total_seconds(), "locked")
    if address:
        row = _window(session, f"addr:{address}", ADDRESS_WINDOW)
        if row is not None and row.count >= policy.failures_per_address_per_15min:
            raise Throttled("Too many failed sign-ins from this address. Try again later.",
                            (row.window_start + ADDRESS_WINDOW - now).total_seconds(), "address")
    row = _window(session, f"user:{username.lower()}", USER_WINDOW)
    if row is not None and row.count >= policy.failures_per_user_per_minute:
        raise Throttled("Too many failed sign-ins for this username. Try again later.",
                        (row.window_start + USER_WINDOW - now).total_seconds(), "username")


def _count(session: Session, key: str, length: timedelta) -> None:
    row = session.get(LoginFailures, key)
    if row is None:
        session.add(LoginFailures(scope_key=key, window_start=utcnow(), count=1))
    elif row.window_start + length <= utcnow():
        row.window_start, row.count = utcnow(), 1
    else:
        row.count += 1


def record_failure(session: Session, policy: LoginPolicy, username: str, address: str | None,
                   user: User | None) -> bool:
    """Counts a failed attempt; returns True when it locked the account."""
    _count(session, f"user:{username.lower()}", USER_WINDOW)
    if address:
        _count(session, f"addr:{address}", ADDRESS_WINDOW)
    if user is None:
        return False
    user.failed_logins += 1
    if user.failed_logins >= policy.lockout_threshold:
        user.locked_until = utcnow() + timedelta(seconds=policy.lockout_seconds)
        user.failed_logins = 0
        return True
    return False


def record_success(session: Session, user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None
    row = session.get(LoginFailures, f"user:{user.username.lower()}")
    if row is not None:
        session.delete(row)
