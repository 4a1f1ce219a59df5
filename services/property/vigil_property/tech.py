"""The technician portal's guard: who may try a PIN, how often, and what a wrong one costs.

- Every attempt counts against the caller's client address: ``ATTEMPTS_PER_WINDOW`` a minute, then
  429 until the window ends (this is what stops guessing many accounts' default PINs).
- ``MAX_WRONG_PINS`` wrong PINs in a row lock the account for ``LOCK_DURATION``; while it is locked
  even the right PIN is refused. A right PIN clears the count.

Counts are written in their own short transactions, so they stick even though the request that
caused them is answered with an error (and rolled back). The state lives in the database, so every
web worker of the service sees the same counts.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil_shared.db import Database
from vigil_shared.errors import Problem

from .models import LookupWindow, PinGuard, Property

MAX_WRONG_PINS = 5
LOCK_DURATION = timedelta(minutes=15)
ATTEMPTS_PER_WINDOW = 20
WINDOW = timedelta(minutes=1)

RATE_LIMITED = "urn:vigil:problem:rate-limited"
ACCOUNT_LOCKED = "urn:vigil:problem:account-locked"
NO_MATCH = "urn:vigil:problem:no-match"

_INSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _retry_after(until: datetime, now: datetime) -> str:
    return str(max(1, math.ceil((until - now).total_seconds())))


def locked(until: datetime, now: datetime) -> Problem:
    return Problem(429, "Too many wrong PINs for this account: it is locked for 15 minutes.", title="Account locked",
                   type=ACCOUNT_LOCKED, headers={"Retry-After": _retry_after(until, now)})


def no_match() -> Problem:
    """The same answer for an unknown account number and a wrong PIN: nothing tells them apart."""
    return Problem(404, "No property matches this account number and PIN.", type=NO_MATCH)


def _ensure_row(session: Session, model, **values) -> None:
    insert = _INSERTS[session.get_bind().dialect.name]
    session.execute(insert(model).values(**values).on_conflict_do_nothing())


def count_attempt(db: Database, client: str, now: datetime) -> None:
    """Counts one attempt for ``client``; 429 with ``Retry-After`` past the limit of the window."""
    with db.transaction() as session:
        _ensure_row(session, LookupWindow, client=client, window_start=now, attempts=0)
        window = session.get(LookupWindow, client, with_for_update=True, populate_existing=True)
        if window.window_start <= now - WINDOW:
            window.window_start, window.attempts = now, 0
        window.attempts += 1
        over, window_end = window.attempts > ATTEMPTS_PER_WINDOW, window.window_start + WINDOW
    if over:
        raise Problem(429, f"Too many technician-portal attempts from your address; at most {ATTEMPTS_PER_WINDOW} "
                           "a minute.", title="Too Many Requests", type=RATE_LIMITED,
                      headers={"Retry-After": _retry_after(window_end, now)})


def find_property(session: Session, account_number: str) -> Property | None:
    return session.scalar(select(Property).where(Property.account_number == account_number))


def ensure_unlocked(session: Session, property_id: int, now: datetime) -> None:
    guard = session.get(PinGuard, property_id)
    if guard is not None and guard.locked_until is not None and guard.locked_until > now:
        raise locked(guard.locked_until, now)


def record_failure(db: Database, property_id: int, now: datetime) -> datetime | None:
    """Counts a wrong PIN; returns until when the account is locked if this one locked it."""
    with db.transaction() as session:
        _ensure_row(session, PinGuard, property_id=property_id, failures=0)
        guard = session.get(PinGuard, property_id, with_for_update=True, populate_existing=True)
        if guard.locked_until is not None and guard.locked_until <= now:
            guard.failures, guard.locked_until = 0, None  # an expired lock starts a fresh count
        guard.failures += 1
        guard.last_failure_at = now
        if guard.failures >= MAX_WRONG_PINS:
            guard.failures, guard.locked_until = 0, now + LOCK_DURATION
            return guard.locked_until
    return None


def clear_failures(session: Session, property_id: int) -> None:
    guard = session.get(PinGuard, property_id)
    if guard is not None and (guard.failures or guard.locked_until is not None):
        guard.failures, guard.locked_until = 0, None
