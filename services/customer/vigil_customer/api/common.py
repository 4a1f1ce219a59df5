"""What every view of this service shares: the write context, loading a record the caller may use."""
from __future__ import annotations

from sqlalchemy.orm import Session

from vigil_shared.http import etag_of
from vigil_shared.runtime import current_runtime
from vigil_shared.web import current_identity, request_outbox, request_session

from ..customers import Context, authorize, get_customer
from ..history import Actor


def context(session: Session | None = None) -> Context:
    return Context(session or request_session(), request_outbox(), Actor.of(current_identity()),
                   current_runtime().cipher)


def cipher():
    return current_runtime().cipher


def load_record(customer_id: int, action: str, session: Session | None = None):
    """The record (404 when missing), after checking the caller's ``action`` right at its location (403)."""
    session = session or request_session()
    customer = get_customer(session, customer_id)
    access = authorize(current_identity(), customer, action)
    return customer, access


def load_for(customer_id: int, permission: str, session: Session | None = None):
    """The record for a tab (notes, contacts, files…): 403 without ``permission`` at its location."""
    from vigil_shared.web import forbidden

    session = session or request_session()
    customer = get_customer(session, customer_id)
    if not current_identity().can(permission, customer.location_id):
        raise forbidden(permission)
    return customer


def etag_headers(item, **extra) -> dict:
    return {"ETag": etag_of(item.id, item.version), **extra}
