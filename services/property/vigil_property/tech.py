"""The technician portal's guard: who may try a PIN, how often, and what a wrong one costs.

- Every attempt counts against the caller's client address: ``ATTEMPTS_PER_WINDOW`` a minute, then
  429 until the window ends (this is what stops guessing many accounts' default PINs).
- ``MAX_WRONG_PINS`` wrong PINs in a row lock the account for ``LOCK_DURATION``; while it is locked
  even the right PIN is refused. A right PIN clears the count.

Counts are committed as soon as they are made (one ``INSERT … ON CONFLICT … RETURNING`` each), so
they stick even though the request that caused them is answered with an error. The state lives in
the database, so every web worker of the service sees the same counts. On PostgreSQL the attempt is
counted and the candidate read in one statement (:func:`count_attempt_and_find`), run by the lookup
on an autocommit connection: one round trip, committed before anything is answered. The candidate is
a plain row of the columns the lookup uses (no ORM entity: loading one was most of the read's CPU).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Integer, Row, bindparam, case, delete, select, text, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil_shared.db import utcnow
from vigil_shared.errors import Problem

from . import appointments, equipment, systems
from .account_numbers import account_key
from .models import Appointment, KnownCustomer, LookupWindow, PinGuard, Property
from .properties import ACCESS_COLUMNS, PLAIN_FIELDS

MAX_WRONG_PINS = 5
LOCK_DURATION = timedelta(minutes=15)
ATTEMPTS_PER_WINDOW = 20
WINDOW = timedelta(minutes=1)

PRUNE_SHARE = 0.01  # one attempt in a hundred also removes the ended windows of every client

RATE_LIMITED = "urn:vigil:problem:rate-limited"
ACCOUNT_LOCKED = "urn:vigil:problem:account-locked"
NO_MATCH = "urn:vigil:problem:no-match"

_INSERTS: dict[str, Any] = {
    "postgresql": postgresql.insert,
    "sqlite": sqlite.insert,
}  # dialect -> its upsert-capable insert


def _retry_after(until: datetime, now: datetime) -> str:
    return str(max(1, math.ceil((until - now).total_seconds())))


def locked(until: datetime, now: datetime) -> Problem:
    return Problem(
        429,
        "Too many wrong PINs for this account: it is locked for 15 minutes.",
        title="Account locked",
        type=ACCOUNT_LOCKED,
        headers={"Retry-After": _retry_after(until, now)},
    )


def no_match() -> Problem:
    """The same answer for an unknown account number and a wrong PIN: nothing tells them apart."""
    return Problem(404, "No property matches this account number and PIN.", type=NO_MATCH)


def _upsert(session: Session, model):
    return _INSERTS[session.get_bind().dialect.name](model)


def _dialect(bind: Session | Connection) -> str:
    return bind.dialect.name if isinstance(bind, Connection) else bind.get_bind().dialect.name


@cache
def _counting(dialect: str):
    """The attempt counter's upsert for ``dialect``, built once: the row is created, or its window
    restarted or its count raised, atomically; it answers the count and the window's start."""
    table = LookupWindow.__table__
    now_param = bindparam("now", type_=table.c.window_start.type)
    expired = table.c.window_start <= bindparam("since", type_=table.c.window_start.type)
    return (
        _INSERTS[dialect](table)
        .values(client=bindparam("client"), window_start=now_param, attempts=1)
        .on_conflict_do_update(
            index_elements=[table.c.client],
            set_={
                "attempts": case((expired, 1), else_=table.c.attempts + 1),
                "window_start": case((expired, now_param), else_=table.c.window_start),
            },
        )
        .returning(table.c.attempts, table.c.window_start)
    )


@cache
def _counting_and_finding(dialect: str):
    """PostgreSQL: the attempt counted and the candidate read in one statement (a data-modifying
    ``WITH``), one round trip where two statements and a new transaction cost three."""
    counted = _counting(dialect).cte("counted")
    return select(counted.c.attempts, counted.c.window_start, *_CANDIDATE_COLUMNS).select_from(
        counted.outerjoin(_PROPERTY, _PROPERTY.c.account_key == _ACCOUNT_KEY)
        .outerjoin(_GUARD, _GUARD.c.property_id == _PROPERTY.c.id)
        .outerjoin(_KNOWN, _KNOWN.c.customer_id == _PROPERTY.c.customer_id)
    )


def count_attempt(session: Session | Connection, client: str, now: datetime) -> None:
    """Counts one attempt for ``client`` and commits it; 429 with ``Retry-After`` past the window's limit.

    One statement (a Core statement on the table: the ORM's bulk-insert path costs more than the
    upsert, and the same parameters on every call let SQLAlchemy reuse its compiled form).
    """
    row = session.execute(_counting(_dialect(session)), _counting_params(client, now)).one()
    _counted(session, row[0], row[1], now)


def count_attempt_and_find(
    session: Session | Connection, client: str, now: datetime, account_number: str
) -> Candidate | None:
    """:func:`count_attempt`, then :func:`find_candidate`: on PostgreSQL in one statement (the attempt
    still committed before anything is answered, 429 past the limit without a word on the account)."""
    dialect = _dialect(session)
    if dialect != "postgresql":
        count_attempt(session, client, now)
        return find_candidate(session, account_number)
    params = _counting_params(client, now) | {"account_key": account_key(account_number)}
    row = session.execute(_counting_and_finding(dialect), params).one()
    _counted(session, row.attempts, row.window_start, now)
    return None if row.id is None else Candidate(row, row.locked_until, row.failures or 0, row.location_id)


def _counting_params(client: str, now: datetime) -> dict:
    return {"client": client, "now": now, "since": now - WINDOW}


def _counted(session: Session | Connection, attempts: int, window_start: datetime, now: datetime) -> None:
    """Commits the attempt just counted (with, now and then, the pruning of ended windows); 429 past the limit."""
    if random.random() < PRUNE_SHARE:
        prune_windows(session, now)
    session.commit()
    if attempts > ATTEMPTS_PER_WINDOW:
        raise Problem(
            429,
            f"Too many technician-portal attempts from your address; at most {ATTEMPTS_PER_WINDOW} a minute.",
            title="Too Many Requests",
            type=RATE_LIMITED,
            headers={"Retry-After": _retry_after(window_start + WINDOW, now)},
        )


def prune_windows(session: Session | Connection, now: datetime) -> int:
    """Forgets clients whose window has ended (their next attempt starts a new one anyway)."""
    result = session.execute(delete(LookupWindow).where(LookupWindow.window_start <= now - WINDOW))
    return cast(CursorResult[Any], result).rowcount


@dataclass(frozen=True)
class Candidate:
    """The property an account number names, with its lock and its customer's location, in one query.

    ``property`` is a row of :data:`CANDIDATE_PROPERTY_COLUMNS` (attributes named as the model's)."""

    property: Row[Any]
    locked_until: datetime | None
    failures: int
    location_id: int | None


# What the lookup uses of the property: the on-site answer's columns, the PIN's salt and check value
# (never its ciphertext), the customer (for the contacts) and the access columns.
CANDIDATE_PROPERTY_COLUMNS = (
    "id",
    "customer_id",
    *(name for name in PLAIN_FIELDS if name != "central_station"),
    "active",
    *ACCESS_COLUMNS.values(),
    "pin_salt",
    "pin_hash",
)
_PROPERTY, _GUARD, _KNOWN = Property.__table__, PinGuard.__table__, KnownCustomer.__table__
_ACCOUNT_KEY = bindparam("account_key", type_=_PROPERTY.c.account_key.type)
# built once, the account key bound at each call (every lookup reads it)
_CANDIDATE_COLUMNS = (
    *(_PROPERTY.c[name] for name in CANDIDATE_PROPERTY_COLUMNS),
    _GUARD.c.locked_until,
    _GUARD.c.failures,
    _KNOWN.c.location_id,
)
_CANDIDATE = (
    select(*_CANDIDATE_COLUMNS)
    .select_from(
        _PROPERTY.outerjoin(_GUARD, _GUARD.c.property_id == _PROPERTY.c.id).outerjoin(
            _KNOWN, _KNOWN.c.customer_id == _PROPERTY.c.customer_id
        )
    )
    .where(_PROPERTY.c.account_key == _ACCOUNT_KEY)
)


def find_candidate(session: Session | Connection, account_number: str) -> Candidate | None:
    row = session.execute(_CANDIDATE, {"account_key": account_key(account_number)}).first()
    return None if row is None else Candidate(row, row.locked_until, row.failures or 0, row.location_id)


def ensure_unlocked(candidate: Candidate, now: datetime) -> None:
    if candidate.locked_until is not None and candidate.locked_until > now:
        raise locked(candidate.locked_until, now)


def record_failure(session: Session, property_id: int, now: datetime) -> datetime | None:
    """Counts a wrong PIN and commits it; returns until when the account is locked if this one locked it."""
    lapsed = PinGuard.locked_until.is_not(None) & (PinGuard.locked_until <= now)  # a fresh count after a lock
    statement = _upsert(session, PinGuard).values(property_id=property_id, failures=1, last_failure_at=now)
    statement = statement.on_conflict_do_update(
        index_elements=[PinGuard.property_id],
        set_={
            "failures": case((lapsed, 1), else_=PinGuard.failures + 1),
            "locked_until": case((lapsed, None), else_=PinGuard.locked_until),
            "last_failure_at": now,
        },
    ).returning(PinGuard.failures)
    failures = session.execute(statement).scalar_one()
    until = None
    if failures >= MAX_WRONG_PINS:
        until = now + LOCK_DURATION
        session.execute(
            update(PinGuard).where(PinGuard.property_id == property_id).values(failures=0, locked_until=until)
        )
    session.commit()
    return until


def has_failures(candidate: Candidate) -> bool:
    """Whether a right PIN has a count or a lapsed lock to clear."""
    return bool(candidate.failures or candidate.locked_until is not None)


def clear_failures(session: Session, candidate: Candidate) -> None:
    """A right PIN starts the count again (written only when there is something to clear)."""
    if has_failures(candidate):
        session.execute(
            update(PinGuard).where(PinGuard.property_id == candidate.property.id).values(failures=0, locked_until=None)
        )
        session.commit()


# --- what the on-site answer shows besides the property: its systems, equipment and open visits ------

# PostgreSQL: the three lists in one statement, each aggregated as JSON (one round trip and one statement
# to execute where three cost three, with their client-side execution); timestamps written as every
# Vigil response writes them, dates as ISO dates, which the on-site schema keeps as they are.
_ON_SITE_RECORDS_PG = text(
    """
SELECT
  (SELECT coalesce(json_agg(json_build_object(
            'id', s.id, 'kind_id', s.kind_id, 'kind_name', k.name, 'ip_address', s.ip_address, 'port', s.port,
            'username', s.username, 'password_encrypted', s.password_encrypted, 'version', s.version,
            'notes', s.notes, 'details', s.details) ORDER BY s.id), '[]')
     FROM systems s JOIN system_kinds k ON k.id = s.kind_id
    WHERE s.property_id = :property_id) AS systems,
  (SELECT coalesce(json_agg(json_build_object(
            'id', e.id, 'item', e.item, 'zone', e.zone, 'serial_number', e.serial_number,
            'install_date', e.install_date, 'warranty_end', e.warranty_end, 'status', e.status) ORDER BY e.id), '[]')
     FROM equipment e
    WHERE e.property_id = :property_id AND e.status <> 'removed') AS equipment,
  (SELECT coalesce(json_agg(json_build_object(
            'id', a.id, 'type', a.type,
            'starts_at', to_char(a.starts_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'ends_at', to_char(a.ends_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
            'technician_id', a.technician_id, 'notes', a.notes) ORDER BY a.starts_at, a.id), '[]')
     FROM appointments a
    WHERE a.property_id = :property_id AND a.status = 'scheduled' AND a.ends_at >= :now) AS appointments
"""
).bindparams(bindparam("property_id", type_=Integer), bindparam("now", type_=Appointment.__table__.c.ends_at.type))


@dataclass(frozen=True)
class OnSiteRecords:
    """The property's systems (the password still encrypted), equipment not removed and open visits,
    each a dict of the columns the on-site answer shows, in the answer's order."""

    systems: list[dict[str, Any]]
    equipment: list[dict[str, Any]]
    appointments: list[dict[str, Any]]


def on_site_records(conn: Connection, property_id: int) -> OnSiteRecords:
    """What the on-site answer shows besides the property: one statement on PostgreSQL, else the three
    reads (:func:`systems.on_site`, :func:`equipment.on_site`, :func:`appointments.open_on_site`).
    ``tests/test_tech_verify.py`` pins both to the entities' dump."""
    if conn.dialect.name == "postgresql":
        row = conn.execute(_ON_SITE_RECORDS_PG, {"property_id": property_id, "now": utcnow()}).one()
        return OnSiteRecords(row.systems, row.equipment, row.appointments)
    return OnSiteRecords(
        [dict(r._mapping) for r in systems.on_site(conn, property_id)],
        [dict(r._mapping) for r in equipment.on_site(conn, property_id)],
        [dict(r._mapping) for r in appointments.open_on_site(conn, property_id)],
    )
