"""The billing service's replica of the customers: office location, kind, parent, archived.

Copied in shape from the property service's: writes are single ``INSERT … ON CONFLICT`` statements,
so the event consumer and a request that has just asked the customer service can record the same
customer at once without either failing. A location (with kind, parent and archive state, which
travel with it) is only replaced by facts known at a later moment (``location_as_of``), so events
arriving out of order cannot move a customer back to where it was.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil_shared.db import utcnow

from .customer_client import CustomerFacts
from .models import KnownCustomer

_UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}

Lookup = Callable[[int], "CustomerFacts | None"]


def _insert(session: Session):
    dialect = session.get_bind().dialect.name
    return _UPSERTS[dialect](KnownCustomer)


def known_customer(session: Session, customer_id: int, *, lock: bool = False) -> KnownCustomer | None:
    """The replica entry as stored now (never a stale copy from the session), optionally row-locked."""
    statement = select(KnownCustomer).where(KnownCustomer.customer_id == customer_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalar(statement.execution_options(populate_existing=True))


def customer_seen(session: Session, customer_id: int, location_id: int | None, as_of: datetime, **facts: Any) -> None:
    """Records that the customer exists (in ``location_id`` as of ``as_of``); a tombstone stays one.

    ``facts`` are the other columns the sender stated (``kind``, ``parent_id``, ``archived``); what
    it did not state is left as it is. An unknown location (``None``) never erases a known one.
    """
    now = utcnow()
    values = {key: value for key, value in facts.items() if key in ("kind", "parent_id")}
    statement = _insert(session).values(
        customer_id=customer_id,
        deleted=False,
        location_id=location_id,
        location_as_of=as_of if location_id is not None else None,
        updated_at=now,
        **values,
    )
    newer = and_(
        KnownCustomer.deleted.is_(False),
        or_(KnownCustomer.location_as_of.is_(None), KnownCustomer.location_as_of <= as_of),
    )
    changes: dict[str, Any] = dict(values)
    if location_id is not None:
        changes.update(location_id=location_id, location_as_of=as_of)
    if not changes:
        statement = statement.on_conflict_do_nothing(index_elements=[KnownCustomer.customer_id])
    else:
        statement = statement.on_conflict_do_update(
            index_elements=[KnownCustomer.customer_id],
            set_={**changes, "updated_at": now},
            where=newer if location_id is not None else KnownCustomer.deleted.is_(False),
        )
    session.execute(statement)
    if facts.get("archived") is not None:
        customer_archived(session, customer_id, bool(facts["archived"]), as_of)


def customer_archived(session: Session, customer_id: int, archived: bool, as_of: datetime) -> None:
    """Records that the customer was archived (or unarchived) at ``as_of``; an older fact changes nothing
    (the saga's events and the customer service's answers may arrive in any order)."""
    now = utcnow()
    session.execute(
        _insert(session)
        .values(customer_id=customer_id, deleted=False, archived=archived, archived_as_of=as_of, updated_at=now)
        .on_conflict_do_update(
            index_elements=[KnownCustomer.customer_id],
            set_={"archived": archived, "archived_as_of": as_of, "updated_at": now},
            where=and_(
                KnownCustomer.deleted.is_(False),
                or_(KnownCustomer.archived_as_of.is_(None), KnownCustomer.archived_as_of <= as_of),
            ),
        )
    )


def is_archived(session: Session, customer_id: int) -> bool:
    known = known_customer(session, customer_id)
    return known is not None and known.archived


def customer_deleted(session: Session, customer_id: int) -> None:
    """Tombstones the customer (what billing held for it is removed by ``accounts.remove_customer``)."""
    now = utcnow()
    session.execute(
        _insert(session)
        .values(customer_id=customer_id, deleted=True, updated_at=now)
        .on_conflict_do_update(index_elements=[KnownCustomer.customer_id], set_={"deleted": True, "updated_at": now})
    )


def resolve(session: Session, customer_id: int, lookup: Lookup, *, confirm: bool = False) -> KnownCustomer | None:
    """The live replica entry of a customer, or None when there is no such customer.

    The customer service is asked (once) when the replica has never heard of the customer or not yet
    of its location; with ``confirm`` whatever the replica says (a write attaching a record to a
    customer must not attach it to one whose deletion event is still on its way). A tombstone is final.
    """
    known = known_customer(session, customer_id)
    if known is not None and known.deleted:
        return None
    if not confirm and known is not None and known.location_id is not None:
        return known
    asked_at = utcnow()
    facts = lookup(customer_id)
    if facts is None:
        return None if confirm else known
    if (
        known is not None
        and known.location_id == facts.location_id
        and known.archived == facts.archived
        and (facts.kind is None or known.kind == facts.kind)
    ):
        return known  # confirmed, nothing new to record
    extra: dict[str, Any] = {"archived": facts.archived}
    if facts.kind is not None:
        extra["kind"] = facts.kind
    if facts.parent_id is not None:
        extra["parent_id"] = facts.parent_id
    customer_seen(session, customer_id, facts.location_id, asked_at, **extra)
    known = known_customer(session, customer_id)
    return None if known is None or known.deleted else known
