"""Property domain logic: plain functions over a session, no HTTP in here."""
from __future__ import annotations

from typing import Callable

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil_shared.errors import Problem, conflict, not_found, validation_problem
from vigil_shared.http import Page, paginate

from . import customers_replica as replica
from .models import Property


def _no_such_customer() -> Problem:
    return validation_problem({"customer_id": ["No such customer."]}, detail="The customer does not exist.")


def _account_taken() -> Problem:
    return conflict("Another property already uses this account number.",
                    errors={"account_number": ["Already in use."]})


def get_property(session: Session, property_id: int) -> Property:
    found = session.get(Property, property_id)
    if found is None:
        raise not_found("property")
    return found


def list_properties(session: Session, customer_id: int, *, page: int, per_page: int) -> Page:
    statement = select(Property).where(Property.customer_id == customer_id).order_by(Property.id.asc())
    return paginate(session, statement, page, per_page)


def _require_customer(session: Session, customer_id: int, customer_exists: Callable[[int], bool]) -> None:
    """422 unless the customer exists; asks ``customer_exists`` only when the replica has no entry."""
    known = replica.known_customer(session, customer_id)
    if known is None:
        if not customer_exists(customer_id):
            raise _no_such_customer()
        replica.customer_created(session, customer_id)
    elif known.deleted:
        raise _no_such_customer()


def create_property(session: Session, customer_id: int, data: dict, *,
                    customer_exists: Callable[[int], bool]) -> Property:
    """Adds a property to an existing customer.

    After the insert the replica entry is read again under a row lock (SQLite: under the write lock
    the insert took), so a ``customer.deleted`` handled concurrently is either seen here (422) or
    runs after this transaction and removes the new property with the others.
    """
    _require_customer(session, customer_id, customer_exists)
    account_number = data.get("account_number")
    if account_number is not None and session.scalar(
            select(Property.id).where(Property.account_number == account_number)) is not None:
        raise _account_taken()
    created = Property(customer_id=customer_id, **data)
    session.add(created)
    try:
        session.flush()
    except IntegrityError:  # a concurrent request took the account number between our check and our write
        raise _account_taken() from None
    known = replica.known_customer(session, customer_id, lock=True)
    if known is None or known.deleted:
        raise _no_such_customer()
    return created
