"""Customer domain logic: plain functions over a session and the outbox, no HTTP in here."""
from __future__ import annotations

from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil_shared.errors import conflict, not_found
from vigil_shared.http import Page, paginate
from vigil_shared.messaging.outbox import Outbox

from .models import Customer

SORTS = {
    "id": Customer.id.asc(), "-id": Customer.id.desc(),
    "last_name": Customer.last_name.asc(), "-last_name": Customer.last_name.desc(),
    "created_at": Customer.created_at.asc(), "-created_at": Customer.created_at.desc(),
}


def _email_key(email: str | None) -> str | None:
    return email.strip().lower() if email else None


def _ensure_email_free(session: Session, email: str | None, exclude_id: int | None = None) -> None:
    key = _email_key(email)
    if key is None:
        return
    statement = select(Customer.id).where(Customer.email_key == key)
    if exclude_id is not None:
        statement = statement.where(Customer.id != exclude_id)
    if session.scalar(statement) is not None:
        raise conflict("Another customer already uses this email address.", errors={"email": ["Already in use."]})


def get_customer(session: Session, customer_id: int) -> Customer:
    customer = session.get(Customer, customer_id)
    if customer is None:
        raise not_found("customer")
    return customer


def list_customers(session: Session, *, page: int, per_page: int, q: str | None = None,
                   active: bool | None = None, sort: str = "id") -> Page:
    statement = select(Customer)
    if q:
        pattern = f"%{q.lower()}%"
        statement = statement.where(or_(
            func.lower(Customer.first_name).like(pattern),
            func.lower(Customer.last_name).like(pattern),
            Customer.email_key.like(pattern),
        ))
    if active is not None:
        statement = statement.where(Customer.active.is_(active))
    statement = statement.order_by(SORTS[sort], Customer.id.asc())
    return paginate(session, statement, page, per_page)


def _flush_unique(session: Session) -> None:
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took the email between our check and our write
        raise conflict("Another customer already uses this email address.",
                       errors={"email": ["Already in use."]}) from None


def create_customer(session: Session, outbox: Outbox, data: dict) -> Customer:
    _ensure_email_free(session, data.get("email"))
    customer = Customer(**data, email_key=_email_key(data.get("email")))
    session.add(customer)
    _flush_unique(session)
    outbox.add(session, "customer.created", {"customer_id": customer.id})
    return customer


def update_customer(session: Session, outbox: Outbox, customer: Customer, changes: dict) -> Customer:
    changed = sorted(key for key, value in changes.items() if getattr(customer, key) != value)
    if not changed:
        return customer
    if "email" in changed:
        _ensure_email_free(session, changes["email"], exclude_id=customer.id)
        customer.email_key = _email_key(changes["email"])
    for key in changed:
        setattr(customer, key, changes[key])
    _flush_unique(session)
    outbox.add(session, "customer.updated", {"customer_id": customer.id, "changed": changed})
    return customer


def delete_customer(session: Session, outbox: Outbox, customer: Customer) -> None:
    """Removes the record; every service drops what it holds for it on ``customer.deleted``."""
    session.delete(customer)
    session.flush()
    outbox.add(session, "customer.deleted", {"customer_id": customer.id})
