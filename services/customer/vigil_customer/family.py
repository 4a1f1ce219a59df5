"""Parent and sub-customers (seed 001): a flat two-level hierarchy, the parent picker and the header.

Only top-level customers can be parents, and a customer that has sub-customers cannot become one,
so the picker is refused on it; candidates exclude sub-customers and the customer itself.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.errors import conflict

from . import search
from .archiving import name_of, sub_customers
from .models import Customer


def has_children(session: Session, customer_id: int) -> bool:
    return session.scalar(select(Customer.id).where(Customer.parent_customer_id == customer_id).limit(1)) is not None


def family_of(session: Session, customer: Customer, can_view, sees_parent=None) -> dict[str, Any]:
    """The customer's parent (when it has one) and sub-customers, as far as ``can_view(location_id)``
    lets the caller see them, with the header line: "Sub-customer of {name}" or "{N} sub-customers".

    ``sees_parent(location_id)``: whether the caller sees a record's parent there. The link is the
    record's ``parent_customer_id``, a field of the sale card (``customers.sale_info.view``), left out
    of the record without it: the family tells no more, so a sub-customer is listed only where its
    link is seen, and a parent (or the bare "Sub-customer") only when the record's own link is."""
    sees = sees_parent or (lambda location_id: True)
    linked = customer.parent_customer_id is not None and sees(customer.location_id)
    parent = None
    if linked:
        found = session.get(Customer, customer.parent_customer_id)
        if found is not None and can_view(found.location_id):
            parent = {"id": found.id, "name": name_of(found), "archived_at": found.archived_at}
    subs = [s for s in sub_customers(session, customer.id) if can_view(s.location_id) and sees(s.location_id)]
    items = [{"id": s.id, "name": name_of(s), "archived_at": s.archived_at, "location_id": s.location_id} for s in subs]
    if parent is not None:
        header = f"Sub-customer of {parent['name']}"
    elif linked:
        header = "Sub-customer"
    elif items:
        header = f"{len(items)} sub-customer" + ("s" if len(items) != 1 else "")
    else:
        header = None
    return {"parent": parent, "items": items, "total": len(items), "header": header}


def parent_candidates(session: Session, customer: Customer, query: search.ListQuery, visibility) -> search.Result:
    """Top-level customers matching ``query.q`` (name, business name, account number, customer id)
    that this customer may be linked to; 409 on a customer that has sub-customers."""
    if customer.kind == "customer" and has_children(session, customer.id):
        raise conflict(
            "This customer has sub-customers, so it cannot become one: the parent picker is not available.",
        )
    query.kind = "customer"
    query.parent_candidates_for = customer.id
    return search.list_customers(session.connection(), query, visibility)
