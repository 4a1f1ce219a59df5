"""The property service's replica of which customers exist and in which office location.

The shared :class:`vigil_shared.customer_replica.CustomerReplica` over property's ``known_customers``
(newer location wins, a tombstone stays one), plus the archive state, which the archive saga's
events order by their own moment (``archived_as_of``).
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import or_
from sqlalchemy.orm import Session

from vigil_shared.customer_replica import CustomerReplica
from vigil_shared.db import utcnow

from .models import KnownCustomer

__all__ = [
    "follow",
    "customer_archived",
    "customer_deleted",
    "customer_seen",
    "is_archived",
    "known_customer",
    "resolve",
]

# only the location travels with the customer here; the archive state has its own order (archived_as_of)
_replica = CustomerReplica(KnownCustomer)

known_customer = _replica.known
customer_seen = _replica.seen
customer_deleted = _replica.deleted  # what it had is removed by ``properties.remove_customer``
resolve = _replica.resolve
follow = _replica.follow


def is_archived(session: Session, customer_id: int) -> bool:
    known = known_customer(session, customer_id)
    return known is not None and known.archived


def customer_archived(session: Session, customer_id: int, archived: bool, as_of: datetime) -> None:
    """Records that the customer was archived (or unarchived) at ``as_of``; an older event changes nothing."""
    now = utcnow()
    session.execute(
        _replica.insert(session)
        .values(customer_id=customer_id, deleted=False, archived=archived, archived_as_of=as_of, updated_at=now)
        .on_conflict_do_update(
            index_elements=[KnownCustomer.customer_id],
            set_={"archived": archived, "archived_as_of": as_of, "updated_at": now},
            where=or_(KnownCustomer.archived_as_of.is_(None), KnownCustomer.archived_as_of <= as_of),
        )
    )
