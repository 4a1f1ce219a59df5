"""Who may touch which record: the caller's signed identity against the record's office location.

A property's location is its customer's, read from the replica (the customer service is asked once
when the replica does not know it yet, and always before a record is attached to a customer). A
record in a location where the caller lacks the permission answers 403, as the seed's offices
expect; lists are filtered instead.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import wraps

from flask import g

from vigil_shared.errors import FORBIDDEN, Problem
from vigil_shared.identity import Identity
from vigil_shared.web import current_identity, forbidden, request_session

from .. import appointments, customer_client
from .. import customers_replica as replica
from ..history import Actor
from ..models import KnownCustomer, Property
from ..properties import no_such_customer, property_with_location

CODES_VIEW = "confidential.installation_codes.view"


@dataclass(frozen=True)
class Scoped:
    """A property the caller may act on, with the location that decided it."""

    property: Property
    location_id: int | None


def lookup(customer_id: int):
    # resolved at call time so tests can stand in for the customer service
    return customer_client.lookup_customer(customer_id)


def actor() -> Actor:
    return Actor.of(current_identity(), g.get("request_id"))


def live_customer(session, customer_id: int, field: str = "customer_id") -> KnownCustomer:
    """The customer's replica entry, confirmed by the customer service; 422 naming ``field`` when there
    is no such (live) customer. For writes that attach a record to the customer (create, transfer):
    the replica may not have heard of a deletion that has already answered 204."""
    known = replica.resolve(session, customer_id, lookup, confirm=True)
    if known is None:
        raise no_such_customer(field)
    return known


def customer_location(session, customer_id: int) -> int | None:
    known = replica.resolve(session, customer_id, lookup)
    return None if known is None else known.location_id


def require_at(permission: str, location_id: int | None) -> None:
    """403 unless the caller holds ``permission`` at this location.

    Unlike ``vigil_shared.web.require``, an unknown location (``None``) is not "anywhere": a record
    whose location is not known yet is refused to every user (services, which act everywhere, pass).
    """
    if not current_identity().can(permission, location_id):
        raise forbidden(permission)


def property_in_scope(session, property_id: int, permission: str, *more: str) -> Scoped:
    """404 when there is no such property, 403 unless the caller holds every permission at its location."""
    found, location_id = property_with_location(session, property_id)
    if location_id is None:  # not replicated with its location yet: ask the customer service once
        location_id = customer_location(session, found.customer_id)
    for name in (permission, *more):
        require_at(name, location_id)
    return Scoped(found, location_id)


def refuse_unmasking_move(source_location: int | None, target_location: int | None) -> None:
    """403 when moving a record from ``source_location`` to ``target_location`` would show the caller
    codes (the PIN, panel passwords) masked for them where it is now: an operation never reveals a
    value the caller cannot see at its source, and dropping the codes would lose the customer's data."""
    identity = current_identity()
    if not identity.can(CODES_VIEW, source_location) and identity.can(CODES_VIEW, target_location):
        raise Problem(403, "Moving this property would show you its PIN and panel passwords, masked for you "
                           "where it is now. Someone who may see them there can move it.", type=FORBIDDEN,
                      permission=CODES_VIEW,
                      errors={"to_customer_id": [f"Needs the '{CODES_VIEW}' permission where the property is now."]})


def require_field(identity: Identity, permission: str, location_id: int | None, field: str) -> None:
    """403 naming ``field`` when the caller may not set it at this location; nothing is changed."""
    if not identity.can(permission, location_id):
        problem = forbidden(permission)
        problem.errors = {field: [f"You need the '{permission}' permission to set this field."]}
        raise problem


# --- decorators: the record's location is checked before the request body is even parsed ----------
# Place them under ``@requires`` (and ``@idempotent``) and above the flask-smorest decorators, so a
# caller from another location gets 403 whatever body they send, never a 422 about its contents.

def scoped_property(permission: str, *more: str):
    """Resolves the URL's ``property_id`` for the view (``current()``): 404, or 403 outside the caller's rights."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            g.scoped = property_in_scope(request_session(), kwargs["property_id"], permission, *more)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def scoped_appointment(permission: str):
    """Resolves the URL's ``appointment_id`` and its property (``current()``, ``current_appointment()``)."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            session = request_session()
            g.appointment = appointments.get_appointment(session, kwargs["appointment_id"])
            g.scoped = property_in_scope(session, g.appointment.property_id, permission)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def scoped_customer(permission: str, *, must_exist: bool = False):
    """Checks the URL's ``customer_id`` location: 403 outside the caller's rights; with ``must_exist``,
    422 for an unknown or deleted customer. The view reads the location with ``current_location()``."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            session = request_session()
            if must_exist:
                location_id = live_customer(session, kwargs["customer_id"]).location_id
                require_at(permission, location_id)
                # keep what the customer service said, and release SQLite's write lock before
                # ``@idempotent`` records the key in a transaction of its own
                session.commit()
            else:
                location_id = customer_location(session, kwargs["customer_id"])
                if location_id is not None:
                    require_at(permission, location_id)
            g.customer_location = location_id
            return view(*args, **kwargs)

        return wrapper

    return decorator


def current() -> Scoped:
    return g.scoped


def current_appointment():
    return g.appointment


def current_location() -> int | None:
    return g.customer_location
