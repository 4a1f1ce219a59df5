"""The local replica of property account numbers, so search by account number needs no call.

Fed by the property service's events (at-least-once, possibly out of order): ``property.created``
and ``property.updated`` upsert, ``property.transferred`` moves the number to another customer,
``property.deleted`` leaves a tombstone so a late or repeated create cannot bring it back. Each
change re-indexes the search terms of the customers concerned. A ``property.updated`` naming
``central_station`` records the station the property is linked to (Monitored By is then locked).
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from vigil_shared.db import utcnow

from . import search
from .models import PropertyAccount


def _row(session: Session, property_id: int) -> PropertyAccount | None:
    return session.get(PropertyAccount, property_id, with_for_update=True)


def upsert(session: Session, property_id: int, customer_id: int, account_number: str | None) -> None:
    row = _row(session, property_id)
    if row is None:
        session.add(
            PropertyAccount(
                property_id=property_id,
                customer_id=customer_id,
                account_number=account_number,
                deleted=False,
                updated_at=utcnow(),
            )
        )
        session.flush()
        search.reindex_ids(session, [customer_id])
        return
    if row.deleted:
        return
    affected = {row.customer_id, customer_id}
    row.customer_id, row.account_number, row.updated_at = customer_id, account_number, utcnow()
    session.flush()
    search.reindex_ids(session, affected)


def transferred(
    session: Session, property_id: int, from_customer_id: int, to_customer_id: int, account_number: str | None
) -> None:
    row = _row(session, property_id)
    if row is not None and row.deleted:
        return
    if row is None:
        row = PropertyAccount(
            property_id=property_id, customer_id=to_customer_id, account_number=account_number, deleted=False
        )
        session.add(row)
    row.customer_id, row.updated_at = to_customer_id, utcnow()
    if account_number is not None:
        row.account_number = account_number
    session.flush()
    search.reindex_ids(session, {from_customer_id, to_customer_id})


def deleted(session: Session, property_id: int, customer_id: int) -> None:
    row = _row(session, property_id)
    if row is None:
        session.add(
            PropertyAccount(
                property_id=property_id, customer_id=customer_id, account_number=None, deleted=True, updated_at=utcnow()
            )
        )
        session.flush()
        return
    was = row.customer_id
    row.deleted, row.account_number, row.updated_at = True, None, utcnow()
    session.flush()
    search.reindex_ids(session, {was})


def station_linked(session: Session, property_id: int, central_station: str | None) -> None:
    row = _row(session, property_id)
    if row is not None and not row.deleted:
        row.central_station, row.updated_at = central_station, utcnow()
        session.flush()
