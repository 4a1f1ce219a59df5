"""Leads on their own: the same records as `/customers` with `kind: lead`, under the `leads.*` rights only.

Leads have their own permissions: `leads.view` at the lead's location to see, `leads.modify` to
edit. A sales or call-centre user who holds `leads.*` but no `customers.*` right
works here; `/customers` serves callers who handle both kinds. Notes, contacts, tags, files and
history of a lead are under `/customers/{id}/…`, which need only their own tab's permission.
"""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.errors import not_found, validation_problem
from vigil_shared.web import current_identity, request_session

from .. import commands, search
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
from .common import LIKELY_DUPLICATES, NOT_DELETED, context, if_match, lead_rule, loaded
from .customers import list_response, record_response

blp = Blueprint("leads", __name__, url_prefix="/api/v1/leads", description="Leads (customers of kind `lead`)")


def _only_leads(record):
    """A customer under ``/leads`` is 404 (checked once the location check passed)."""
    if record.kind != LEAD:
        raise not_found("lead")
    return record


@blp.route("")
class Leads(MethodView):
    @blp.read("leads.view", CustomerPageSchema, query=CustomerListArgs, query_kwargs=False)
    def get(self, args):
        """List and search the leads of the locations where you hold `leads.view` (as `/customers` does)."""
        if args.get("kind") == "customer":
            raise validation_problem({"kind": ["Only leads are listed here."]})
        identity = current_identity()
        vis = search.Visibility(
            frozenset(), identity.location_filter("leads.view"), identity.location_filter("properties.view")
        )
        return list_response(search.ListQuery(**(args | {"kind": LEAD})), vis)

    @blp.create("leads.create", CustomerSchema, query=CreateArgs, body=LeadCreateSchema, conflict=LIKELY_DUPLICATES)
    def post(self, data, allow_duplicates=False):
        """Create a lead (`lead_status` is required); duplicates answer 409 unless `?allow_duplicates=true`."""
        if data.get("kind", LEAD) != LEAD:
            raise validation_problem({"kind": ["Only leads are created here."]})
        record = commands.create_customer(context(), data | {"kind": LEAD}, allow_duplicates=allow_duplicates)
        return record_response(
            request_session(), record, 201, new=True, Location=url_for("leads.LeadItem", customer_id=record.id)
        )


@blp.route("/<int:customer_id>")
class LeadItem(MethodView):
    @blp.read("leads.view", CustomerSchema, rule=lead_rule)
    def get(self, customer_id):
        """Read a lead (404 for a customer: use `/customers/{id}`)."""
        return record_response(request_session(), _only_leads(loaded()))

    @blp.change("leads.modify", CustomerSchema, rule=lead_rule, body=CustomerPatchSchema)
    def patch(self, changes, customer_id):
        """Change some fields of a lead; the same rules as `PATCH /customers/{id}`."""
        record = commands.update_customer(context(if_match()), _only_leads(loaded()), changes)
        return record_response(request_session(), record)

    @blp.remove("leads.delete", rule=lead_rule, stale=NOT_DELETED)
    def delete(self, customer_id):
        """Delete a lead and everything attached to it."""
        commands.delete_customer(context(if_match()), _only_leads(loaded()))
        return None


@blp.route("/<int:customer_id>/convert")
class ConvertLeadHere(MethodView):
    @blp.transition("leads.modify", CustomerSchema, rule=lead_rule, body=ConvertSchema)
    def post(self, data, customer_id):
        """Convert the lead to a customer (as `POST /customers/{id}/convert`); it then lives under `/customers`."""
        record = commands.convert_lead(context(if_match()), _only_leads(loaded()), data)
        return record_response(
            request_session(), record, Location=url_for("customers.CustomerItem", customer_id=record.id)
        )
