"""The property service's replica of which customers exist and in which office location.

Writes are single ``INSERT … ON CONFLICT`` statements, so the event consumer and a request that has
just asked the customer service can record the same customer at once without either failing. A
location is only ever replaced by one known at a later moment (``location_as_of``), so events
arriving out of order cannot move a customer back to where it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from vigil_shared.db import upsert, utcnow

from .customer_client import CustomerFacts
from .models import KnownCustomer

Lookup = Callable[[int], "CustomerFacts | None"]


def _insert(session: Session):
    return upsert(session, KnownCustomer)


def known_customer(session: Session, customer_id: int, *, lock: bool = False) -> KnownCustomer | None:
    """The replica entry as stored now (never a stale copy from the session), optionally row-locked."""
    statement = select(KnownCustomer).where(KnownCustomer.customer_id == customer_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalar(statement.execution_options(populate_existing=True))


def customer_seen(session: Session, customer_id: int, location_id: int | None, as_of: datetime) -> None:
    """Records that the customer exists (in ``location_id`` as of ``as_of``); a tombstone stays one.

    An unknown location (``None``) never erases a known one: it means the sender did not say.
    """
    now = utcnow()
    statement = _insert(session).values(
        customer_id=customer_id,
        deleted=False,
        location_id=location_id,
        location_as_of=as_of if location_id is not None else None,
        updated_at=now,
    )
    if location_id is None:
        statement = statement.on_conflict_do_nothing(index_elements=[KnownCustomer.customer_id])
    else:
        statement = statement.on_conflict_do_update(
            index_elements=[KnownCustomer.customer_id],
            set_={"location_id": location_id, "location_as_of": as_of, "updated_at": now},
            where=and_(
                KnownCustomer.deleted.is_(False),
                or_(KnownCustomer.location_as_of.is_(None), KnownCustomer.location_as_of <= as_of),
            ),
        )
    session.execute(statement)


def customer_deleted(session: Session, customer_id: int) -> None:
    """Tombstones the customer (what it had is removed by ``properties.remove_customer``)."""
    now = utcnow()
    session.execute(
        _insert(session)
        .values(customer_id=customer_id, deleted=True, updated_at=now)
        .on_conflict_do_update(index_elements=[KnownCustomer.customer_id], set_={"deleted": True, "updated_at": now})
    )


def resolve(session: Session, customer_id: int, lookup: Lookup, *, confirm: bool = False) -> KnownCustomer | None:
    """The live replica entry of a customer, or None when there is no such customer.

    The customer service is asked (once) when the replica has never heard of the customer, or knows
    it but not yet its location (customers replicated before locations existed). With ``confirm``
    it is asked whatever the replica says: the replica learns of a deletion only when the
    ``customer.deleted`` event arrives, seconds after the ``DELETE`` answered 204, so anything that
    attaches a record to a customer asks the source, and a customer deleted before the request
    started is refused. A tombstone is final either way: ids are never reused.
    """
    known = known_customer(session, customer_id)
    if known is not None and known.deleted:
        return None
    if not confirm and known is not None and known.location_id is not None:
        return known
    asked_at = utcnow()
    facts = lookup(customer_id)
    if facts is None:
        # unknown stays unknown; a known one's deletion event is on its way (a write must not wait for it)
        return None if confirm else known
    if known is not None and known.location_id == facts.location_id:
        return known  # confirmed, nothing new to record
    customer_seen(session, customer_id, facts.location_id, asked_at)
    known = known_customer(session, customer_id)
    return None if known is None or known.deleted else known


def is_archived(session: Session, customer_id: int) -> bool:
    known = known_customer(session, customer_id)
    return known is not None and known.archived


def customer_archived(session: Session, customer_id: int, archived: bool, as_of: datetime) -> None:
    """Records that the customer was archived (or unarchived) at ``as_of``; an older event changes nothing."""
    now = utcnow()
    session.execute(
        _insert(session)
        .values(customer_id=customer_id, deleted=False, archived=archived, archived_as_of=as_of, updated_at=now)
        .on_conflict_do_update(
            index_elements=[KnownCustomer.customer_id],
            set_={"archived": archived, "archived_as_of": as_of, "updated_at": now},
            where=or_(KnownCustomer.archived_as_of.is_(None), KnownCustomer.archived_as_of <= as_of),
        )
    )
