"""Invoices: drafts, issuing (sequential numbers), voiding, and a customer's list."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import answers, etag_headers
from vigil_shared.idempotency import idempotent
from vigil_shared.web import record_rule, request_session, requires

from .. import commands, invoices
from ..schemas import (
    InvoiceCreateSchema,
    InvoiceListArgs,
    InvoicePageSchema,
    InvoicePatchSchema,
    InvoiceSchema,
    VoidSchema,
)
from .common import context, customer_rule, if_match, loaded, located

blp = Blueprint("invoices", __name__, url_prefix="/api/v1", description="Invoices")


def invoice_rule(permission: str):
    """``loaded()`` is the URL's invoice (:class:`~vigil_billing.commands.ScopedInvoice`): 404 when unknown
    or outside the caller's rights."""
    return record_rule(lambda invoice_id, **_: commands.load_invoice(context(), invoice_id, permission))


def invoice_body(invoice, location_id):
    return located(invoice, InvoiceSchema, location_id)


def _answer(invoice, location_id, status: int = 200, **headers):
    return invoice_body(invoice, location_id), status, etag_headers(invoice, **headers)


@blp.route("/customers/<int:customer_id>/invoices")
class CustomerInvoices(MethodView):
    @requires("billing.view")
    @customer_rule("billing.view")
    @blp.arguments(InvoiceListArgs, location="query", as_kwargs=True)
    @blp.response(200, InvoicePageSchema)
    def get(self, customer_id, page, per_page, status=None):
        """The customer's invoices, newest first (`status=open`: issued or partially paid)."""
        query = invoices.InvoiceQuery(customer_id=customer_id, status=status)
        result = invoices.list_invoices(request_session(), query, page, per_page)
        location_id = loaded().location_id
        return result.answer(lambda invoice: invoice_body(invoice, location_id))

    @requires("billing.manage")
    @customer_rule("billing.manage", must_exist=True)
    @idempotent
    @blp.arguments(InvoiceCreateSchema)
    @blp.response(201, InvoiceSchema)
    def post(self, data, customer_id):
        """Create a one-time invoice (a draft, or issued at once with `issue: true`). Amounts are minor
        units; each line's tax is rounded half away from zero. A sub-customer's invoice is owed by its parent."""
        customer = loaded()
        invoice = commands.create_invoice(context(), customer, data)
        location = url_for("invoices.InvoiceItem", invoice_id=invoice.id)
        return _answer(invoice, customer.location_id, 201, Location=location)


@blp.route("/invoices/<int:invoice_id>")
class InvoiceItem(MethodView):
    @requires("billing.view")
    @invoice_rule("billing.view")
    @blp.response(200, InvoiceSchema)
    def get(self, invoice_id):
        """One invoice with its lines, balance and status."""
        scoped = loaded()
        return _answer(scoped.record, scoped.location_id)

    @requires("billing.manage")
    @invoice_rule("billing.manage")
    @blp.arguments(InvoicePatchSchema)
    @answers(
        blp,
        200,
        InvoiceSchema,
        conflict="The invoice is issued: it does not change (void it and issue a new one)",
        stale=True,
    )
    def patch(self, changes, invoice_id):
        """Change a draft (its lines replace the old ones)."""
        scoped = loaded()
        return _answer(commands.update_invoice(context(if_match()), scoped, changes), scoped.location_id)

    @requires("billing.manage")
    @invoice_rule("billing.manage")
    @answers(blp, 204, conflict="Only a draft is deleted; an issued invoice is voided", stale=True)
    def delete(self, invoice_id):
        """Delete a draft."""
        commands.delete_invoice(context(if_match()), loaded())
        return None, 204


@blp.route("/invoices/<int:invoice_id>/issue")
class InvoiceIssue(MethodView):
    @requires("billing.manage")
    @invoice_rule("billing.manage")
    @idempotent
    @answers(blp, 200, InvoiceSchema, conflict="The invoice is not a draft", stale=True)
    def post(self, invoice_id):
        """Issue a draft: it gets the company's next number, today's date and its due date, and is final."""
        scoped = loaded()
        return _answer(commands.issue_invoice(context(if_match()), scoped), scoped.location_id)


@blp.route("/invoices/<int:invoice_id>/void")
class InvoiceVoid(MethodView):
    @requires("billing.manage")
    @invoice_rule("billing.manage")
    @idempotent
    @blp.arguments(VoidSchema, required=False)
    @answers(blp, 200, InvoiceSchema, conflict="Already void, a draft, or payments are allocated to it", stale=True)
    def post(self, data, invoice_id):
        """Void an issued invoice nothing is paid on (its number stays used); issue a new one to correct it."""
        scoped = loaded()
        invoice = commands.void_invoice(context(if_match()), scoped, (data or {}).get("reason"))
        return _answer(invoice, scoped.location_id)
