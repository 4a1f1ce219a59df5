"""Billing methods: cards and bank accounts as processor tokens (brand, last four, expiry, holder)."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import PaginationArgs, etag_headers
from vigil_shared.web import request_session

from .. import commands, methods
from ..schemas import MethodCreateSchema, MethodPageSchema, MethodSchema
from .common import PROCESSOR_DOWN, context, customer_rule, if_match, live_customer_rule, loaded, located, method_rule

blp = Blueprint("billing_methods", __name__, url_prefix="/api/v1", description="Billing methods (tokens only)")


def method_body(method, location_id):
    return located(method, MethodSchema, location_id)


TOKEN_REFUSED = {409: "The token is already a billing method", 503: PROCESSOR_DOWN}


@blp.route("/customers/<int:customer_id>/billing-methods")
class CustomerMethods(MethodView):
    @blp.read("billing.view", MethodPageSchema, rule=customer_rule, query=PaginationArgs)
    def get(self, customer_id, page, per_page):
        """The customer's cards and bank accounts: brand, last four, expiry, holder — never a number."""
        result = methods.list_methods(request_session(), customer_id, page, per_page)
        location_id = loaded().location_id
        return result.answer(lambda method: method_body(method, location_id))

    @blp.create(
        "billing_methods.manage", MethodSchema, rule=live_customer_rule, body=MethodCreateSchema, answers=TOKEN_REFUSED
    )
    def post(self, data, customer_id):
        """Add a card or bank account from the token the client got from the processor's tokenize endpoint.
        Billing reads the token's brand, last four, expiry and holder from the processor; a card number in
        the body is refused (422)."""
        customer = loaded()
        method = commands.add_method(context(), customer, data)
        location = url_for("billing_methods.MethodItem", billing_method_id=method.id)
        return method_body(method, customer.location_id), 201, etag_headers(method, Location=location)


@blp.route("/billing-methods/<int:billing_method_id>")
class MethodItem(MethodView):
    @blp.read("billing.view", MethodSchema, rule=method_rule)
    def get(self, billing_method_id):
        """One billing method."""
        scoped = loaded()
        return method_body(scoped.record, scoped.location_id), 200, etag_headers(scoped.record)

    @blp.remove("billing_methods.manage", rule=method_rule)
    def delete(self, billing_method_id):
        """Remove a billing method."""
        commands.remove_method(context(if_match()), loaded())
        return None, 204


@blp.route("/billing-methods/<int:billing_method_id>/make-default")
class MethodDefault(MethodView):
    @blp.transition("billing_methods.manage", MethodSchema, rule=method_rule)
    def post(self, billing_method_id):
        """Make this the customer's default billing method."""
        scoped = loaded()
        method = commands.make_default_method(context(if_match()), scoped)
        return method_body(method, scoped.location_id), 200, etag_headers(method)
