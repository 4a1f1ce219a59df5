"""Payments: cash and checks, charges to billing methods (asynchronous, 202), refunds."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import PaginationArgs, etag_headers
from vigil_shared.web import request_session

from .. import commands, payments
from ..schemas import PaymentCreateSchema, PaymentPageSchema, PaymentSchema, RefundSchema
from .common import PROCESSOR_DOWN, context, customer_rule, if_match, live_customer_rule, loaded, located, payment_rule

blp = Blueprint("payments", __name__, url_prefix="/api/v1", description="Payments and refunds")


def payment_body(session, payment, location_id):
    return located(payment, PaymentSchema, location_id, allocations=payments.allocations_of(session, payment.id))


PAID_BY_PARENT = "A sub-customer: payments are received on the parent (`parent_payments`)"


@blp.route("/customers/<int:customer_id>/payments")
class CustomerPayments(MethodView):
    @blp.read("billing.view", PaymentPageSchema, rule=customer_rule, query=PaginationArgs)
    def get(self, customer_id, page, per_page):
        """The customer's payments, newest first, with their allocations."""
        session = request_session()
        result = payments.list_payments(session, customer_id, page, per_page)
        location_id = loaded().location_id
        return result.answer(lambda payment: payment_body(session, payment, location_id))

    @blp.create(
        "payments.create", PaymentSchema, rule=live_customer_rule, body=PaymentCreateSchema, conflict=PAID_BY_PARENT
    )
    @blp.alt_response(202, schema=PaymentSchema, description="A card or ach payment: charged by the worker")
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
    @blp.read("billing.view", PaymentSchema, rule=payment_rule)
    def get(self, payment_id):
        """One payment: its status (a charge's outcome), allocations, refunds and credit left."""
        scoped = loaded()
        return payment_body(request_session(), scoped.record, scoped.location_id), 200, etag_headers(scoped.record)


REFUND_REFUSED = {
    409: "The payment did not succeed, the processor refused the refund, or a refund of another amount is unresolved",
    503: PROCESSOR_DOWN,
}


@blp.route("/payments/<int:payment_id>/refund")
class PaymentRefund(MethodView):
    @blp.transition(
        "payments.create", PaymentSchema, rule=payment_rule, optional_body=RefundSchema, answers=REFUND_REFUSED
    )
    def post(self, data, payment_id):
        """Refund all or part of a payment (through the processor for a charge): out of the customer's
        credit first, then the newest allocations, whose invoices reopen."""
        scoped = loaded()
        payment = commands.refund_payment(context(if_match()), scoped, data or {})
        return payment_body(request_session(), payment, scoped.location_id), 200, etag_headers(payment)
