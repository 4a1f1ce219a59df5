"""Payments: cash and checks, charges to billing methods (asynchronous, 202), refunds."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import PaginationArgs, answers, etag_headers
from vigil_shared.idempotency import idempotent
from vigil_shared.web import record_rule, request_session, requires

from .. import commands, payments
from ..schemas import PaymentCreateSchema, PaymentPageSchema, PaymentSchema, RefundSchema
from .common import context, customer_rule, if_match, loaded, located

blp = Blueprint("payments", __name__, url_prefix="/api/v1", description="Payments and refunds")


def payment_rule(permission: str):
    return record_rule(lambda payment_id, **_: commands.load_payment(context(), payment_id, permission))


def payment_body(session, payment, location_id):
    return located(payment, PaymentSchema, location_id, allocations=payments.allocations_of(session, payment.id))


@blp.route("/customers/<int:customer_id>/payments")
class CustomerPayments(MethodView):
    @requires("billing.view")
    @customer_rule("billing.view")
    @blp.arguments(PaginationArgs, location="query", as_kwargs=True)
    @blp.response(200, PaymentPageSchema)
    def get(self, customer_id, page, per_page):
        """The customer's payments, newest first, with their allocations."""
        session = request_session()
        result = payments.list_payments(session, customer_id, page, per_page)
        location_id = loaded().location_id
        return result.answer(lambda payment: payment_body(session, payment, location_id))

    @requires("payments.create")
    @customer_rule("payments.create", must_exist=True)
    @idempotent
    @blp.arguments(PaymentCreateSchema)
    @blp.response(201, PaymentSchema)
    @blp.alt_response(202, schema=PaymentSchema, description="A card or ach payment: charged by the worker")
    @blp.alt_response(409, description="A sub-customer: payments are received on the parent (`parent_payments`)")
    def post(self, data, customer_id):
        """Record cash or a check (201, allocated at once), or charge a billing method (202: `pending` until
        the worker has charged it with the payment's idempotency key; then `succeeded` or `failed` with the
        processor's reason). Allocated to the named invoices, then the oldest due; the rest is credit."""
        customer = loaded()
        payment = commands.create_payment(context(), customer, data)
        status = 202 if payment.status == "pending" else 201
        location = url_for("payments.PaymentItem", payment_id=payment.id)
        body = payment_body(request_session(), payment, customer.location_id)
        return body, status, etag_headers(payment, Location=location)


@blp.route("/payments/<int:payment_id>")
class PaymentItem(MethodView):
    @requires("billing.view")
    @payment_rule("billing.view")
    @blp.response(200, PaymentSchema)
    def get(self, payment_id):
        """One payment: its status (a charge's outcome), allocations, refunds and credit left."""
        scoped = loaded()
        return payment_body(request_session(), scoped.record, scoped.location_id), 200, etag_headers(scoped.record)


@blp.route("/payments/<int:payment_id>/refund")
class PaymentRefund(MethodView):
    @requires("payments.create")
    @payment_rule("payments.create")
    @idempotent
    @blp.arguments(RefundSchema, required=False)
    @answers(
        blp,
        200,
        PaymentSchema,
        conflict="The payment did not succeed, or the processor refused the refund",
        stale=True,
        unavailable="The payment processor could not be reached",
    )
    def post(self, data, payment_id):
        """Refund all or part of a payment (through the processor for a charge): out of the customer's
        credit first, then the newest allocations, whose invoices reopen."""
        scoped = loaded()
        payment = commands.refund_payment(context(if_match()), scoped, data or {})
        return payment_body(request_session(), payment, scoped.location_id), 200, etag_headers(payment)
