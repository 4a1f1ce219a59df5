"""Likely duplicates of a record about to be created.

One engine for every caller (create today; import and merge later): give it the normalised
identifying values of a candidate and it returns existing records sharing a phone number, the
email address, the SSN (compared through its blind index, nothing decrypted) or name and address,
each with the reasons it matched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from typing import Any

from sqlalchemy import ColumnElement, Select, bindparam, exists, or_, select
from sqlalchemy.orm import Session

from .models import Customer
from .record import PHONE_FIELDS

REASONS = ("phone", "email", "ssn", "name_address")
# The fields each reason compares: a reason resting on a confidential field is told only to callers
# who may see that field unmasked on the matching record (``customers.visible_matches``).
REASON_FIELDS = {
    "phone": PHONE_FIELDS,
    "email": ("email",),
    "ssn": ("ssn",),
    "name_address": ("first_name", "last_name", "address_line1", "zip", "city"),
}
# The E.164 column of every phone field: a shared number is a reason
PHONE_COLUMNS = tuple(getattr(Customer, f"{name}_e164") for name in PHONE_FIELDS)
MAX_MATCHES = 20
# The columns a match is judged and named by: read as plain rows, not whole records (most creates
# match nothing, but reading the record's hundred column descriptions still cost a tenth of one).
_COMPARED = (
    Customer.id,
    Customer.first_name,
    Customer.last_name,
    Customer.kind,
    Customer.location_id,
    Customer.email_key,
    Customer.ssn_index,
    Customer.name_address_key,
    *PHONE_COLUMNS,
)


@dataclass(frozen=True)
class Candidate:
    """What identifies a person: E.164 phones, lower-cased email, SSN blind index, name+address key."""

    phones: frozenset[str] = frozenset()
    email_key: str | None = None
    ssn_index: str | None = None
    name_address_key: str | None = None

    @classmethod
    def of(cls, customer: Customer) -> Candidate:
        phones = {getattr(customer, column.key) for column in PHONE_COLUMNS}
        return cls(frozenset(p for p in phones if p), customer.email_key, customer.ssn_index, customer.name_address_key)


@dataclass
class Match:
    id: int
    name: str
    kind: str
    location_id: int | None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "reasons": self.reasons}


def _conditions(
    phones: bool, email: bool, ssn: bool, name_address: bool, table: Any = None, prefix: str = ""
) -> ColumnElement[bool]:
    """Any of the candidate's values held by a record of ``table`` (the customers, or an alias of them;
    values as bound parameters, see :func:`parameters`)."""
    table = (Customer.__table__ if table is None else table).c
    conditions = []
    if phones:
        conditions += [table[column.key].in_(bindparam(f"{prefix}phones", expanding=True)) for column in PHONE_COLUMNS]
    if email:
        conditions.append(table.email_key == bindparam(f"{prefix}email_key"))
    if ssn:
        conditions.append(table.ssn_index == bindparam(f"{prefix}ssn_index"))
    if name_address:
        conditions.append(table.name_address_key == bindparam(f"{prefix}name_address_key"))
    return or_(*conditions)


@cache
def _statement(phones: bool, email: bool, ssn: bool, name_address: bool, exclude: bool) -> Select:
    """The query for candidates holding these kinds of values, built once per kind (of the table's
    columns, values as bound parameters): building it on every create cost a third of the check."""
    table = Customer.__table__.c
    statement = (
        select(*(table[column.key] for column in _COMPARED))
        .where(_conditions(phones, email, ssn, name_address))
        .order_by(table.id)
        .limit(MAX_MATCHES * 4)
    )
    return statement.where(table.id != bindparam("exclude_id")) if exclude else statement


def shape(candidate: Candidate) -> tuple[bool, bool, bool, bool]:
    """The kinds of values ``candidate`` holds, in the order of ``REASONS`` (all False: it can match nothing)."""
    return (
        bool(candidate.phones),
        bool(candidate.email_key),
        bool(candidate.ssn_index),
        bool(candidate.name_address_key),
    )


@cache
def held_elsewhere(kinds: tuple[bool, bool, bool, bool], new_id: ColumnElement[int]) -> ColumnElement[bool]:
    """Whether a record other than ``new_id`` holds any of a candidate's values (of these ``kinds``), on
    PostgreSQL (SQLite's ``RETURNING`` names columns without their table, the alias's too): a
    create's ``INSERT`` returns it (``customers._insert``), so a create that matches nothing is checked
    by the statement that writes it. The parameters are :func:`parameters`' with ``PREFIX`` (the names
    of the columns are the ``INSERT``'s own)."""
    other = Customer.__table__.alias("other")
    held = select(other.c.id).where(_conditions(*kinds, table=other, prefix=PREFIX), other.c.id != new_id)
    return exists(held)


PREFIX = "other_"


def parameters(candidate: Candidate, prefix: str = "") -> dict[str, object]:
    """The values of :func:`_conditions`' bound parameters that ``candidate`` holds."""
    values = {
        "phones": sorted(candidate.phones),
        "email_key": candidate.email_key,
        "ssn_index": candidate.ssn_index,
        "name_address_key": candidate.name_address_key,
    }
    return {prefix + name: value for name, value in values.items() if value}


def find(session: Session, candidate: Candidate, *, exclude_id: int | None = None) -> list[Match]:
    """Existing records that look like ``candidate``, most reasons first."""
    if not (candidate.phones or candidate.email_key or candidate.ssn_index or candidate.name_address_key):
        return []
    statement = _statement(*shape(candidate), exclude_id is not None)
    values = parameters(candidate)
    if exclude_id is not None:
        values["exclude_id"] = exclude_id
    matches = []
    for row in session.execute(statement, values):
        reasons = []
        if candidate.phones & {p for p in (getattr(row, column.key) for column in PHONE_COLUMNS) if p}:
            reasons.append("phone")
        if candidate.email_key and row.email_key == candidate.email_key:
            reasons.append("email")
        if candidate.ssn_index and row.ssn_index == candidate.ssn_index:
            reasons.append("ssn")
        if candidate.name_address_key and row.name_address_key == candidate.name_address_key:
            reasons.append("name_address")
        if reasons:
            matches.append(
                Match(row.id, f"{row.first_name} {row.last_name}".strip(), row.kind, row.location_id, reasons)
            )
    matches.sort(key=lambda m: (-len(m.reasons), m.id))
    return matches[:MAX_MATCHES]
