"""Throttling of failed sign-ins: per username, per client address, and account lock-out.

- More than ``failures_per_user_per_minute`` failures for one username in a minute → 429.
- More than ``failures_per_address_per_15min`` failures from one address in 15 minutes → 429.
- ``lockout_threshold`` consecutive failures lock the account for ``lockout_seconds``; while
  locked even the right password is refused (429 with ``Retry-After``).
Counters live in the gateway database so every gateway process shares them, and every count is
one atomic statement (an upsert with ``RETURNING`` for the windows, ``UPDATE … SET n = n + 1`` for
the account), so concurrent failures never overwrite each other's increments.

A username is kept in a window's key only as an HMAC-SHA256 of its lower-case form under a key derived
from ``VIGIL_SECRET_KEY`` (:func:`name_key`): whatever was typed into the username field (a password,
at times) is never stored. The same name gives the same key, so every limit counts exactly as before.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
from datetime import datetime, timedelta
from typing import cast

from sqlalchemy import Table, and_, case, delete, literal, or_, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
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
        super().__init__(
            429,
            detail,
            type="urn:vigil:problem:rate-limited",
            headers={"Retry-After": str(seconds)},
            retry_after=seconds,
        )
        self.reason = reason


def name_key(policy: LoginPolicy, username: str) -> str:
    """What a username is counted under: the hex HMAC-SHA256 of its lower-case form (never the name)."""
    return hmac.new(policy.name_secret.encode(), username.lower().encode(), hashlib.sha256).hexdigest()


def _window(session: Session, key: str, length: timedelta) -> LoginFailures | None:
    row = session.get(LoginFailures, key)
    if row is not None and row.window_start + length <= utcnow():
        return None
    return row


# A username no active account has is locked like an account after as many failures in a row, with the
# same answer, so whether an account exists cannot be told from a lockout: its failures count under
# ``ghost:<name key>`` (kept as long as an account's count, which only a success ends) and its lock under
# ``ghost-lock:<name key>`` (the row's window is the lock).
GHOST_COUNT_WINDOW = timedelta(days=30)


def _locked(retry_after: float) -> Throttled:
    return Throttled("This account is locked after repeated failed sign-ins. Try again later.", retry_after, "locked")


def check(session: Session, policy: LoginPolicy, username: str, address: str | None, user: User | None) -> None:
    """Raises :class:`Throttled` when this attempt must not even be checked."""
    now, named = utcnow(), name_key(policy, username)
    if user is not None and user.locked_until is not None and user.locked_until > now:
        raise _locked((user.locked_until - now).total_seconds())
    if user is None or not user.active:
        lock = _window(session, f"ghost-lock:{named}", timedelta(seconds=policy.lockout_seconds))
        if lock is not None:
            raise _locked((lock.window_start + timedelta(seconds=policy.lockout_seconds) - now).total_seconds())
    # (window key, its length, failures allowed in it, the reason given, whose failures)
    windows = [
        (
            f"user:{named}",
            USER_WINDOW,
            policy.failures_per_user_per_minute,
            "username",
            "for this username",
        )
    ]
    if address:
        windows.insert(
            0,
            (f"addr:{address}", ADDRESS_WINDOW, policy.failures_per_address_per_15min, "address", "from this address"),
        )
    for key, length, limit, reason, whose in windows:
        row = _window(session, key, length)
        if row is not None and row.count >= limit:
            raise Throttled(
                f"Too many failed sign-ins {whose}. Try again later.",
                (row.window_start + length - now).total_seconds(),
                reason,
            )


def _count(session: Session, key: str, length: timedelta) -> int:
    """Adds one failure to ``key``'s window (a new window once the old one is over); returns the count."""
    now = utcnow()
    table = cast(Table, LoginFailures.__table__)
    dialect = session.get_bind().dialect.name
    insert = (postgresql_insert if dialect == "postgresql" else sqlite_insert)(table)
    expired = table.c.window_start <= literal(now - length, table.c.window_start.type)
    statement = (
        insert.values(scope_key=key, window_start=now, count=1)
        .on_conflict_do_update(
            index_elements=[table.c.scope_key],
            set_={
                "count": case((expired, 1), else_=table.c.count + 1),
                "window_start": case((expired, literal(now, table.c.window_start.type)), else_=table.c.window_start),
            },
        )
        .returning(table.c.count)
    )
    return session.execute(statement).scalar_one()


def _restart(session: Session, key: str) -> None:
    """``key``'s window starts now (whatever it held)."""
    table = cast(Table, LoginFailures.__table__)
    insert = (postgresql_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert)(table)
    now = literal(utcnow(), table.c.window_start.type)
    session.execute(
        insert.values(scope_key=key, window_start=now, count=1).on_conflict_do_update(
            index_elements=[table.c.scope_key], set_={"window_start": now, "count": 1}
        )
    )


# One failure in a hundred also removes every window that has ended (a later failure under its key
# would start a new one anyway), so names and addresses tried once are not kept for ever.
PRUNE_SHARE = 0.01


def prune_ended_windows(session: Session, policy: LoginPolicy, now: datetime) -> None:
    """Deletes the windows that are over: exactly those :func:`_count` would restart."""
    lengths = {
        "user:": USER_WINDOW,
        "addr:": ADDRESS_WINDOW,
        "ghost:": GHOST_COUNT_WINDOW,
        "ghost-lock:": timedelta(seconds=policy.lockout_seconds),
    }
    session.execute(
        delete(LoginFailures).where(
            or_(
                *(
                    and_(LoginFailures.scope_key.startswith(prefix), LoginFailures.window_start <= now - length)
                    for prefix, length in lengths.items()
                )
            )
        )
    )


def record_failure(
    session: Session, policy: LoginPolicy, username: str, address: str | None, user: User | None
) -> bool:
    """Counts a failed attempt; returns True when it locked the account."""
    if random.random() < PRUNE_SHARE:
        prune_ended_windows(session, policy, utcnow())
    named = name_key(policy, username)
    _count(session, f"user:{named}", USER_WINDOW)
    if address:
        _count(session, f"addr:{address}", ADDRESS_WINDOW)
    if user is None:
        if _count(session, f"ghost:{named}", GHOST_COUNT_WINDOW) >= policy.lockout_threshold:
            _restart(session, f"ghost-lock:{named}")
            session.execute(delete(LoginFailures).where(LoginFailures.scope_key == f"ghost:{named}"))
        return False
    failures = session.execute(
        update(User)
        .where(User.id == user.id)
        .values(failed_logins=User.failed_logins + 1)
        .returning(User.failed_logins)
        .execution_options(synchronize_session=False)
    ).scalar_one()
    if failures >= policy.lockout_threshold:
        session.execute(
            update(User)
            .where(User.id == user.id)
            .values(locked_until=utcnow() + timedelta(seconds=policy.lockout_seconds), failed_logins=0)
            .execution_options(synchronize_session=False)
        )
        return True
    return False


def record_success(session: Session, policy: LoginPolicy, user: User) -> None:
    user.failed_logins = 0
    user.locked_until = None
    row = session.get(LoginFailures, f"user:{name_key(policy, user.username)}")
    if row is not None:
        session.delete(row)
