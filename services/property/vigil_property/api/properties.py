"""Properties: the monitored sites of customers, their life cycle and their history."""
from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import PaginationArgs, check_if_match, etag_headers
from vigil_shared.idempotency import idempotent
from vigil_shared.runtime import current_runtime
from vigil_shared.web import current_identity, request_outbox, request_session, requires

from .. import history
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
from . import scope
from .present import property_body, property_page

blp = Blueprint("properties", __name__, url_prefix="/api/v1", description="Monitored properties of customers")

CODES_MODIFY = "confidential.installation_codes.modify"



def _answer(scoped: scope.Scoped, status: int = 200, **headers):
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
        return property_page(result, domain.locations_of(session, (p.customer_id for p in result.items))), 200, \
            result.headers()


@blp.route("/customers/<int:customer_id>/properties")
class CustomerProperties(MethodView):
    @requires("properties.view")
    @scope.scoped_customer("properties.view")
    @blp.arguments(CustomerPropertiesArgs, location="query", as_kwargs=True)
    @blp.response(200, PropertyPageSchema)
    def get(self, customer_id, page, per_page, active=None):
        """List a customer's properties (inactive ones included, marked), 20 a page, oldest first."""
        locations = current_identity().location_filter("properties.view")
        result = domain.list_properties(request_session(), locations=locations, customer_id=customer_id,
                                        active=active, page=page, per_page=per_page)
        return property_page(result, {customer_id: scope.current_location()}), 200, result.headers()

    @requires("properties.create")
    @scope.scoped_customer("properties.create", must_exist=True)
    @idempotent
    @blp.arguments(PropertyCreateSchema)
    @blp.response(201, PropertySchema)
    @blp.alt_response(409, description="The account number is already used by another property")
    @blp.alt_response(503, description="The customer service could not be asked about the customer")
    def post(self, data, customer_id):
        """Add a property to a customer. An unknown or deleted customer answers 422."""
        session = request_session()
        created = domain.create_property(session, request_outbox(), current_runtime().cipher, customer_id, data,
                                         scope.actor())
        session.commit()
        return _answer(scope.Scoped(created, scope.current_location()), 201,
                       Location=url_for("properties.PropertyItem", property_id=created.id))


@blp.route("/properties/<int:property_id>")
class PropertyItem(MethodView):
    @requires("properties.view")
    @scope.scoped_property("properties.view")
    @blp.response(200, PropertySchema)
    def get(self, property_id):
        """Read one property; the `ETag` header is what `If-Match` expects."""
        return _answer(scope.current())

    @requires("properties.modify")
    @scope.scoped_property("properties.modify")
    @blp.arguments(PropertyPatchSchema)
    @blp.response(200, PropertySchema)
    @blp.alt_response(409, description="The property is inactive, or the account number is taken")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def patch(self, changes, property_id):
        """Change some fields. Changing the PIN needs `confidential.installation_codes.modify`."""
        session, scoped = request_session(), scope.current()
        check_if_match(scoped.property.id, scoped.property.version)
        if "pin" in changes:
            scope.require_field(current_identity(), CODES_MODIFY, scoped.location_id, "pin")
        domain.update_property(session, request_outbox(), current_runtime().cipher, scoped.property, changes,
                               scope.actor())
        session.commit()
        return _answer(scoped)


@blp.route("/properties/<int:property_id>/deactivate")
class PropertyDeactivation(MethodView):
    @requires("properties.modify")
    @scope.scoped_property("properties.modify")
    @idempotent
    @blp.arguments(StateChangeSchema, required=False)
    @blp.response(200, PropertySchema)
    @blp.alt_response(409, description="The property is already inactive")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def post(self, data, property_id):
        """Deactivate: the property stays visible, marked inactive, and cannot be edited until reactivated."""
        return _set_active(property_id, False, data)


@blp.route("/properties/<int:property_id>/reactivate")
class PropertyReactivation(MethodView):
    @requires("properties.modify")
    @scope.scoped_property("properties.modify")
    @idempotent
    @blp.arguments(StateChangeSchema, required=False)
    @blp.response(200, PropertySchema)
    @blp.alt_response(409, description="The property is already active")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def post(self, data, property_id):
        """Reactivate an inactive property, making it editable again."""
        return _set_active(property_id, True, data)


def _set_active(property_id: int, active: bool, data: dict):
    session, scoped = request_session(), scope.current()
    check_if_match(scoped.property.id, scoped.property.version)
    domain.set_active(session, request_outbox(), scoped.property, active, scope.actor(), (data or {}).get("reason"))
    session.commit()
    return _answer(scoped)


@blp.route("/properties/<int:property_id>/transfer")
class PropertyTransfer(MethodView):
    @requires("properties.modify")
    @scope.scoped_property("properties.modify")
    @idempotent
    @blp.arguments(TransferSchema)
    @blp.response(200, PropertySchema)
    @blp.alt_response(403, description="No `properties.modify` at a customer's location, or the transfer would show "
                                       "you codes masked for you where the property is now")
    @blp.alt_response(409, description="The property is inactive")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    @blp.alt_response(503, description="The customer service could not be asked about the new customer")
    def post(self, data, property_id):
        """Move the property, with its systems, equipment, appointments and history, to another customer.

        For the new homeowner case. You need `properties.modify` at both customers' locations, and
        a transfer that would show you the PIN and panel passwords masked for you where the property
        is now is refused (403): someone who may see them there transfers it. The move is written in
        the property's history and, through `property.transferred`, in both customers' histories.
        """
        session, scoped = request_session(), scope.current()
        check_if_match(scoped.property.id, scoped.property.version)
        domain.ensure_editable(scoped.property)
        target = scope.live_customer(session, data["to_customer_id"], field="to_customer_id")
        scope.require_at("properties.modify", target.location_id)
        scope.refuse_unmasking_move(scoped.location_id, target.location_id)
        domain.transfer_property(
            session, request_outbox(), scoped.property, target.customer_id, scope.actor(), data.get("reason")
        )
        session.commit()
        return _answer(scope.Scoped(scoped.property, target.location_id))


@blp.route("/properties/<int:property_id>/history")
class PropertyHistory(MethodView):
    @requires("history.view")
    @scope.scoped_property("properties.view", "history.view")
    @blp.arguments(PaginationArgs, location="query", as_kwargs=True)
    @blp.response(200, HistoryPageSchema)
    def get(self, property_id, page, per_page):
        """The property's changes, newest first: monitoring status, account number, life cycle, transfers."""
        result = history.list_history(request_session(), property_id, page=page, per_page=per_page)
        return result.body(), 200, result.headers()
