"""Properties: the monitored sites of customers, their life cycle and their history."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.customer_replica import CUSTOMER_SERVICE_DOWN
from vigil_shared.endpoints import Blueprint
from vigil_shared.http import PaginationArgs, etag_headers
from vigil_shared.web import current_identity, request_session

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
from .common import (
    INACTIVE,
    context,
    customer_rule,
    if_match,
    live_customer_rule,
    loaded,
    property_read_rule,
    property_rule,
)
from .present import property_body, property_page, property_response

blp = Blueprint("properties", __name__, url_prefix="/api/v1", description="Monitored properties of customers")


def _answer(scoped: commands.Scoped, status: int = 200, **headers):
    return property_body(scoped.property, scoped.location_id), status, etag_headers(scoped.property, **headers)


@blp.route("/properties")
class Properties(MethodView):
    @blp.read("properties.view", PropertyPageSchema, query=PropertyListArgs)
    def get(self, page, per_page, **filters):
        """Search properties in every location where you may see them (`q`, `account_number`, filters)."""
        session = request_session()
        locations = current_identity().location_filter("properties.view")
        result = domain.list_properties(session, locations=locations, page=page, per_page=per_page, **filters)
        return property_page(result, domain.locations_of(session, (p.customer_id for p in result.items)))


CREATE_REFUSED = {409: "The account number is already used by another property", 503: CUSTOMER_SERVICE_DOWN}


@blp.route("/customers/<int:customer_id>/properties")
class CustomerProperties(MethodView):
    @blp.read("properties.view", PropertyPageSchema, rule=customer_rule, query=CustomerPropertiesArgs)
    def get(self, customer_id, page, per_page, active=None):
        """List a customer's properties (inactive ones included, marked), 20 a page, oldest first."""
        locations = current_identity().location_filter("properties.view")
        result = domain.list_properties(
            request_session(), locations=locations, customer_id=customer_id, active=active, page=page, per_page=per_page
        )
        return property_page(result, {customer_id: loaded()})

    @blp.create(
        "properties.create", PropertySchema, rule=live_customer_rule, body=PropertyCreateSchema, answers=CREATE_REFUSED
    )
    def post(self, data, customer_id):
        """Add a property to a customer. An unknown or deleted customer answers 422."""
        created = commands.create_property(context(), loaded(), data)
        return _answer(created, 201, Location=url_for("properties.PropertyItem", property_id=created.property.id))


INACTIVE_OR_TAKEN = "The property is inactive, or the account number is taken"


@blp.route("/properties/<int:property_id>")
class PropertyItem(MethodView):
    @blp.read("properties.view", PropertySchema, rule=property_read_rule)
    def get(self, property_id):
        """Read one property; the `ETag` header is what `If-Match` expects."""
        return property_response(loaded())

    @blp.change(
        "properties.modify", PropertySchema, rule=property_rule, body=PropertyPatchSchema, conflict=INACTIVE_OR_TAKEN
    )
    def patch(self, changes, property_id):
        """Change some fields. Changing the PIN needs `confidential.installation_codes.modify`."""
        return _answer(commands.update_property(context(if_match()), loaded(), changes))


WAS_INACTIVE = "The property is already inactive"


@blp.route("/properties/<int:property_id>/deactivate")
class PropertyDeactivation(MethodView):
    @blp.transition(
        "properties.modify", PropertySchema, rule=property_rule, optional_body=StateChangeSchema, conflict=WAS_INACTIVE
    )
    def post(self, data, property_id):
        """Deactivate: the property stays visible, marked inactive, and cannot be edited until reactivated."""
        return _answer(commands.set_active(context(if_match()), loaded(), False, (data or {}).get("reason")))


WAS_ACTIVE = "The property is already active"


@blp.route("/properties/<int:property_id>/reactivate")
class PropertyReactivation(MethodView):
    @blp.transition(
        "properties.modify", PropertySchema, rule=property_rule, optional_body=StateChangeSchema, conflict=WAS_ACTIVE
    )
    def post(self, data, property_id):
        """Reactivate an inactive property, making it editable again."""
        return _answer(commands.set_active(context(if_match()), loaded(), True, (data or {}).get("reason")))


TRANSFER_REFUSED = {
    403: "No `properties.modify` at the new customer's location, or the transfer would show "
    "you codes masked for you where the property is now",
    404: "No such property, or one where you lack `properties.modify`",
    409: INACTIVE,
    503: "The customer service could not be asked about the new customer",
}


@blp.route("/properties/<int:property_id>/transfer")
class PropertyTransfer(MethodView):
    @blp.transition(
        "properties.modify", PropertySchema, rule=property_rule, body=TransferSchema, answers=TRANSFER_REFUSED
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
    @blp.read(
        "history.view", HistoryPageSchema, record=property_rule("properties.view", "history.view"), query=PaginationArgs
    )
    def get(self, property_id, page, per_page):
        """The property's changes, newest first: monitoring status, account number, life cycle, transfers."""
        return history.list_history(request_session(), property_id, page=page, per_page=per_page).answer()
