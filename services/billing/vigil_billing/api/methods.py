"""Billing methods: cards and bank accounts as processor tokens (brand, last four, expiry, holder)."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import PaginationArgs, answers, etag_headers
from vigil_shared.idempotency import idempotent
from vigil_shared.web import record_rule, request_session, requires

from .. import commands, methods
from ..schemas import MethodCreateSchema, MethodPageSchema, MethodSchema
from .common import context, customer_rule, if_match, loaded, located

blp = Blueprint("billing_methods", __name__, url_prefix="/api/v1", description="Billing methods (tokens only)")


def method_rule(permission: str):
    return record_rule(lambda billing_method_id, **_: commands.load_method(context(), billing_method_id, permission))


def method_body(method, location_id):
    return located(method, MethodSchema, location_id)


@blp.route("/customers/<int:customer_id>/billing-methods")
class CustomerMethods(MethodView):
    @requires("billing.view")
    @customer_rule("billing.view")
    @blp.arguments(PaginationArgs, location="query", as_kwargs=True)
    @blp.response(200, MethodPageSchema)
    def get(self, customer_id, page, per_page):
        """The customer's cards and bank accounts: brand, last four, expiry, holder — never a number."""
        result = methods.list_methods(request_session(), customer_id, page, per_page)
        location_id = loaded().location_id
        return result.answer(lambda method: method_body(method, location_id))

    @requires("billing_methods.manage")
    @customer_rule("billing_methods.manage", must_exist=True)
    @idempotent
    @blp.arguments(MethodCreateSchema)
    @answers(
        blp,
        201,
        MethodSchema,
        conflict="The token is already a billing method",
        unavailable="The payment processor could not be reached",
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
    @requires("billing.view")
    @method_rule("billing.view")
    @blp.response(200, MethodSchema)
    def get(self, billing_method_id):
        """One billing method."""
        scoped = loaded()
        return method_body(scoped.record, scoped.location_id), 200, etag_headers(scoped.record)

    @requires("billing_methods.manage")
    @method_rule("billing_methods.manage")
    @answers(blp, 204, stale=True)
    def delete(self, billing_method_id):
        """Remove a billing method."""
        commands.remove_method(context(if_match()), loaded())
        return None, 204


@blp.route("/billing-methods/<int:billing_method_id>/make-default")
class MethodDefault(MethodView):
    @requires("billing_methods.manage")
    @method_rule("billing_methods.manage")
    @idempotent
    @answers(blp, 200, MethodSchema, stale=True)
    def post(self, billing_method_id):
        """Make this the customer's default billing method."""
        scoped = loaded()
        method = commands.make_default_method(context(if_match()), scoped)
        return method_body(method, scoped.location_id), 200, etag_headers(method)
