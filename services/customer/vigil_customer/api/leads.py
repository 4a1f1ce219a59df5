"""Leads on their own: the same records as `/customers` with `kind: lead`, under the `leads.*` rights only.

Seed 001 gives leads their own permissions ("Leads with View on the lead's location to see;
Modify to edit"). A sales or call-centre user who holds `leads.*` but no `customers.*` right
works here; `/customers` serves callers who handle both kinds. Notes, contacts, tags, files and
history of a lead are under `/customers/{id}/…`, which need only their own tab's permission.
"""
from __future__ import annotations

from functools import wraps

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.errors import not_found, validation_problem
from vigil_shared.http import check_if_match
from vigil_shared.idempotency import idempotent
from vigil_shared.web import current_identity, forbidden, request_session, requires

from .. import customers as domain
from .. import files as file_domain
from .. import search
from ..access import LEAD
from ..schemas import (
    ConvertSchema,
    CreateArgs,
    CustomerListArgs,
    CustomerPageSchema,
    CustomerPatchSchema,
    CustomerSchema,
    LeadCreateSchema,
)
from .common import context
from .customers import list_response, record_response

blp = Blueprint("leads", __name__, url_prefix="/api/v1/leads", description="Leads (customers of kind `lead`)")


def _lead(customer_id: int, action: str):
    """The record after checking `leads.<action>` at its location (403); a customer here is 404."""
    session = request_session()
    record = domain.get_customer(session, customer_id, for_update=action in ("modify", "delete"))
    if not current_identity().can(f"leads.{action}", record.location_id):
        raise forbidden(f"leads.{action}")
    return record


def lead_rule(action: str):
    """The location check before the body is parsed (see ``common.record_rule``)."""

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            _lead(kwargs["customer_id"], action)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def _only_leads(record):
    if record.kind != LEAD:
        raise not_found("lead")
    return record


@blp.route("")
class Leads(MethodView):
    @requires("leads.view")
    @blp.arguments(CustomerListArgs, location="query")
    @blp.response(200, CustomerPageSchema)
    def get(self, args):
        """List and search the leads of the locations where you hold `leads.view` (as `/customers` does)."""
        if args.get("kind") == "customer":
            raise validation_problem({"kind": ["Only leads are listed here."]})
        vis = search.Visibility(frozenset(), current_identity().location_filter("leads.view"))
        return list_response(request_session(), search.ListQuery(**(args | {"kind": LEAD})), vis)

    @requires("leads.create")
    @idempotent
    @blp.arguments(CreateArgs, location="query", as_kwargs=True)
    @blp.arguments(LeadCreateSchema)
    @blp.response(201, CustomerSchema)
    @blp.alt_response(409, description="Likely duplicates (`matches` you may view: id, name, kind and the "
                                       "reasons you may see; `other_matches`: how many elsewhere) or the email "
                                       "is in use")
    def post(self, data, allow_duplicates=False):
        """Create a lead (`lead_status` is required); duplicates answer 409 unless `?allow_duplicates=true`."""
        if data.get("kind", LEAD) != LEAD:
            raise validation_problem({"kind": ["Only leads are created here."]})
        session = request_session()
        record = domain.create(context(session), data | {"kind": LEAD}, allow_duplicates=allow_duplicates)
        session.commit()
        return record_response(session, record, 201, Location=url_for("leads.LeadItem", customer_id=record.id))


@blp.route("/<int:customer_id>")
class LeadItem(MethodView):
    @requires("leads.view")
    @lead_rule("view")
    @blp.response(200, CustomerSchema)
    def get(self, customer_id):
        """Read a lead (404 for a customer: use `/customers/{id}`)."""
        return record_response(request_session(), _only_leads(_lead(customer_id, "view")))

    @requires("leads.modify")
    @lead_rule("modify")
    @blp.arguments(CustomerPatchSchema)
    @blp.response(200, CustomerSchema)
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def patch(self, changes, customer_id):
        """Change some fields of a lead; the same rules as `PATCH /customers/{id}`."""
        session = request_session()
        record = _only_leads(_lead(customer_id, "modify"))
        check_if_match(record.id, record.version)
        domain.update(context(session), record, changes)
        session.commit()
        return record_response(session, record)

    @requires("leads.delete")
    @lead_rule("delete")
    @blp.response(204)
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was deleted")
    def delete(self, customer_id):
        """Delete a lead and everything attached to it."""
        session = request_session()
        record = _only_leads(_lead(customer_id, "delete"))
        check_if_match(record.id, record.version)
        keys = domain.delete(context(session), record)
        session.commit()
        file_domain.remove_blobs(keys)
        return None


@blp.route("/<int:customer_id>/convert")
class ConvertLeadHere(MethodView):
    @requires("leads.modify")
    @lead_rule("modify")
    @idempotent
    @blp.arguments(ConvertSchema)
    @blp.response(200, CustomerSchema)
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def post(self, data, customer_id):
        """Convert the lead to a customer (as `POST /customers/{id}/convert`); it then lives under `/customers`."""
        session = request_session()
        record = _only_leads(_lead(customer_id, "modify"))
        check_if_match(record.id, record.version)
        domain.convert(context(session), record, data)
        session.commit()
        return record_response(session, record, Location=url_for("customers.CustomerItem", customer_id=record.id))

