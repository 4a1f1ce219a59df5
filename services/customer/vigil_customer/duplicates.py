"""Likely duplicates of a record about to be created (seed 001: "checks for possible duplicates").

One engine for every caller (create today; import and merge later): give it the normalised
identifying values of a candidate and it returns existing records sharing a phone number, the
email address, the SSN (compared through its blind index, nothing decrypted) or name and address,
each with the reasons it matched.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from .models import Customer

REASONS = ("phone", "email", "ssn", "name_address")
MAX_MATCHES = 20


@dataclass(frozen=True)
class Candidate:
    """What identifies a person: E.164 phones, lower-cased email, SSN blind index, name+address key."""

    phones: frozenset[str] = frozenset()
    email_key: str | None = None
    ssn_index: str | None = None
    name_address_key: str | None = None

    @classmethod
    def of(cls, customer: Customer) -> "Candidate":
        phones = {customer.primary_phone_e164, customer.work_phone_e164, customer.cell_phone_e164,
                  customer.other_phone_e164}
        return cls(frozenset(p for p in phones if p), customer.email_key, customer.ssn_index,
                   customer.name_address_key)


@dataclass
class Match:
    id: int
    name: str
    kind: str
    location_id: int | None
    reasons: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"id": self.id, "name": self.name, "kind": self.kind, "reasons": self.reasons}


def find(session: Session, candidate: Candidate, *, exclude_id: int | None = None) -> list[Match]:
    """Existing records that look like ``candidate``, most reasons first."""
    phone_columns = (Customer.primary_phone_e164, Customer.work_phone_e164, Customer.cell_phone_e164,
                     Customer.other_phone_e164)
    conditions = []
    if candidate.phones:
        phones = sorted(candidate.phones)
        conditions += [column.in_(phones) for column in phone_columns]
    if candidate.email_key:
        conditions.append(Customer.email_key == candidate.email_key)
    if candidate.ssn_index:
        conditions.append(Customer.ssn_index == candidate.ssn_index)
    if candidate.name_address_key:
        conditions.append(Customer.name_address_key == candidate.name_address_key)
    if not conditions:
        return []
    statement = select(Customer).where(or_(*conditions)).order_by(Customer.id).limit(MAX_MATCHES * 4)
    if exclude_id is not None:
        statement = statement.where(Customer.id != exclude_id)
    matches = []
    for row in session.scalars(statement):
        reasons = []
        if candidate.phones & {p for p in (row.primary_phone_e164, row.work_phone_e164, row.cell_phone_e164,
                                           row.other_phone_e164) if p}:
            reasons.append("phone")
        if candidate.email_key and row.email_key == candidate.email_key:
            reasons.append("email")
        if candidate.ssn_index and row.ssn_index == candidate.ssn_index:
            reasons.append("ssn")
        if candidate.name_address_key and row.name_address_key == candidate.name_address_key:
            reasons.append("name_address")
        if reasons:
            matches.append(Match(row.id, f"{row.first_name} {row.last_name}".strip(), row.kind, row.location_id,
                                 reasons))
    matches.sort(key=lambda m: (-len(m.reasons), m.id))
    return matches[:MAX_MATCHES]
