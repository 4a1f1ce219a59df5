"""What every view of this service shares: the write context, loading a record the caller may use."""
from __future__ import annotations

from functools import wraps

from sqlalchemy.orm import Session

from vigil_shared.runtime import current_runtime
from vigil_shared.web import current_identity, request_outbox, request_session

from ..customers import Context, authorize, get_customer
from ..history import Actor

# Writes lock the record's row from the first read (see ``get_customer``); a tab's writes (a
# contact, a note…) lock it too, so e.g. two call-order moves cannot interleave.
WRITES = frozenset({"modify", "delete"})


def context(session: Session | None = None) -> Context:
    return Context(session or request_session(), request_outbox(), Actor.of(current_identity()),
                   current_runtime().cipher)


def cipher():
    return current_runtime().cipher


def load_record(customer_id: int, action: str, session: Session | None = None):
    """The record (404 when missing), after checking the caller's ``action`` right at its location (403)."""
    session = session or request_session()
    customer = get_customer(session, customer_id, for_update=action in WRITES)
    access = authorize(current_identity(), customer, action)
    return customer, access


def load_for(customer_id: int, permission: str, session: Session | None = None):
    """The record for a tab (notes, contacts, files…): 403 without ``permission`` at its location."""
    from vigil_shared.web import forbidden

    session = session or request_session()
    customer = get_customer(session, customer_id, for_update=permission.endswith(".modify"))
    if not current_identity().can(permission, customer.location_id):
        raise forbidden(permission)
    return customer


def record_rule(*, action: str | None = None, permission: str | None = None):
    """Checks the record's own location before the request body is even parsed.

    Place it right under ``@requires``: a caller who holds the permission only in another
    location gets 403 for this record whatever they send, never a 422 about their body.
    ``action`` checks the record's own ``view``/``modify``/``delete`` right (customers.* or
    leads.* by kind); ``permission`` checks a tab's permission (notes, contacts, files…).
    """

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if action:
                load_record(kwargs["customer_id"], action)
            else:
                assert permission is not None, "either an action or a permission"
                load_for(kwargs["customer_id"], permission)
            return view(*args, **kwargs)

        return wrapper

    return decorator
