"""Properties: the monitored sites of customers, their life cycle and their history."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import PaginationArgs, answers, etag_headers
from vigil_shared.idempotency import idempotent
from vigil_shared.web import current_identity, request_session, requires

from .. import commands, history
from .. import properties as domain
from ..schemas import (
    CustomerPropertiesArgs,
    HistoryPageSchema,
    PropertyCreateSchema,
    PropertyListArgs,
    PropertyPageSchema,
    PropertyPatchSchema,
    PropertySchema,
    StateChangeSchema,
    TransferSchema,
)
from .common import context, customer_rule, if_match, loaded, property_read_rule, property_rule
from .present import property_body, property_page, property_response

blp = Blueprint("properties", __name__, url_prefix="/api/v1", description="Monitored properties of customers")


def _answer(scoped: commands.Scoped, status: int = 200, **headers):
    return property_body(scoped.property, scoped.location_id), status, etag_headers(scoped.property, **headers)


@blp.route("/properties")
class Properties(MethodView):
    @requires("properties.view")
    @blp.arguments(PropertyListArgs, location="query", as_kwargs=True)
    @blp.response(200, PropertyPageSchema)
    def get(self, page, per_page, **filters):
        """Search properties in every location where you may see them (`q`, `account_number`, filters)."""
        session = request_session()
        locations = current_identity().location_filter("properties.view")
        result = domain.list_properties(session, locations=locations, page=page, per_page=per_page, **filters)
        return property_page(result, domain.locations_of(session, (p.customer_id for p in result.items)))


@blp.route("/customers/<int:customer_id>/properties")
class CustomerProperties(MethodView):
    @requires("properties.view")
    @customer_rule("properties.view")
    @blp.arguments(CustomerPropertiesArgs, location="query", as_kwargs=True)
    @blp.response(200, PropertyPageSchema)
    def get(self, customer_id, page, per_page, active=None):
        """List a customer's properties (inactive ones included, marked), 20 a page, oldest first."""
        locations = current_identity().location_filter("properties.view")
        result = domain.list_properties(
            request_session(), locations=locations, customer_id=customer_id, active=active, page=page, per_page=per_page
        )
        return property_page(result, {customer_id: loaded()})

    @requires("properties.create")
    @customer_rule("properties.create", must_exist=True)
    @idempotent
    @blp.arguments(PropertyCreateSchema)
    @answers(
        blp,
        201,
        PropertySchema,
        conflict="The account number is already used by another property",
        unavailable="The customer service could not be asked about the customer",
    )
    def post(self, data, customer_id):
        """Add a property to a customer. An unknown or deleted customer answers 422."""
        created = commands.create_property(context(), loaded(), data)
        return _answer(created, 201, Location=url_for("properties.PropertyItem", property_id=created.property.id))


@blp.route("/properties/<int:property_id>")
class PropertyItem(MethodView):
    @requires("properties.view")
    @property_read_rule("properties.view")
    @blp.response(200, PropertySchema)
    def get(self, property_id):
        """Read one property; the `ETag` header is what `If-Match` expects."""
        return property_response(loaded())

    @requires("properties.modify")
    @property_rule("properties.modify")
    @blp.arguments(PropertyPatchSchema)
    @answers(blp, 200, PropertySchema, conflict="The property is inactive, or the account number is taken", stale=True)
    def patch(self, changes, property_id):
        """Change some fields. Changing the PIN needs `confidential.installation_codes.modify`."""
        return _answer(commands.update_property(context(if_match()), loaded(), changes))


@blp.route("/properties/<int:property_id>/deactivate")
class PropertyDeactivation(MethodView):
    @requires("properties.modify")
    @property_rule("properties.modify")
    @idempotent
    @blp.arguments(StateChangeSchema, required=False)
    @answers(blp, 200, PropertySchema, conflict="The property is already inactive", stale=True)
    def post(self, data, property_id):
        """Deactivate: the property stays visible, marked inactive, and cannot be edited until reactivated."""
        return _answer(commands.set_active(context(if_match()), loaded(), False, (data or {}).get("reason")))


@blp.route("/properties/<int:property_id>/reactivate")
class PropertyReactivation(MethodView):
    @requires("properties.modify")
    @property_rule("properties.modify")
    @idempotent
    @blp.arguments(StateChangeSchema, required=False)
    @answers(blp, 200, PropertySchema, conflict="The property is already active", stale=True)
    def post(self, data, property_id):
        """Reactivate an inactive property, making it editable again."""
        return _answer(commands.set_active(context(if_match()), loaded(), True, (data or {}).get("reason")))


@blp.route("/properties/<int:property_id>/transfer")
class PropertyTransfer(MethodView):
    @requires("properties.modify")
    @property_rule("properties.modify")
    @idempotent
    @blp.arguments(TransferSchema)
    @answers(
        blp,
        200,
        PropertySchema,
        forbidden="No `properties.modify` at the new customer's location, or the transfer would show "
        "you codes masked for you where the property is now",
        not_found="No such property, or one where you lack `properties.modify`",
        conflict="The property is inactive",
        stale=True,
        unavailable="The customer service could not be asked about the new customer",
    )
    def post(self, data, property_id):
        """Move the property, with its systems, equipment, appointments and history, to another customer.

        For the new homeowner case. You need `properties.modify` at both customers' locations, and
        a transfer that would show you the PIN and panel passwords masked for you where the property
        is now is refused (403): someone who may see them there transfers it. The move is written in
        the property's history and, through `property.transferred`, in both customers' histories.
        """
        return _answer(
            commands.transfer_property(context(if_match()), loaded(), data["to_customer_id"], data.get("reason"))
        )


@blp.route("/properties/<int:property_id>/history")
class PropertyHistory(MethodView):
    @requires("history.view")
    @property_rule("properties.view", "history.view")
    @blp.arguments(PaginationArgs, location="query", as_kwargs=True)
    @blp.response(200, HistoryPageSchema)
    def get(self, property_id, page, per_page):
        """The property's changes, newest first: monitoring status, account number, life cycle, transfers."""
        return history.list_history(request_session(), property_id, page=page, per_page=per_page).answer()
