"""The property service's replica of which customers exist, and what a customer's deletion removes.

Writes are single ``INSERT … ON CONFLICT`` statements, so the event consumer and a request that has
just asked the customer service can record the same customer at once without either failing.
"""
from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil_shared.db import utcnow

from .models import KnownCustomer, Property

_UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return _UPSERTS[dialect](KnownCustomer)


def known_customer(session: Session, customer_id: int, *, lock: bool = False) -> KnownCustomer | None:
    """The replica entry as stored now (never a stale copy from the session), optionally row-locked."""
    statement = select(KnownCustomer).where(KnownCustomer.customer_id == customer_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalar(statement.execution_options(populate_existing=True))


def customer_created(session: Session, customer_id: int) -> None:
    """Records the customer as existing; a tombstone stays a tombstone."""
    session.execute(
        _insert(session).values(customer_id=customer_id, deleted=False, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=[KnownCustomer.customer_id])
    )


def customer_deleted(session: Session, customer_id: int) -> int:
    """Tombstones the customer and removes every property it had; returns how many properties went."""
    now = utcnow()
    session.execute(
        _insert(session).values(customer_id=customer_id, deleted=True, updated_at=now)
        .on_conflict_do_update(index_elements=[KnownCustomer.customer_id], set_={"deleted": True, "updated_at": now})
    )
    result = session.execute(delete(Property).where(Property.customer_id == customer_id))
    return result.rowcount
