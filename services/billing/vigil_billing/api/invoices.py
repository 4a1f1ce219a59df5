"""Invoices: drafts, issuing (sequential numbers), voiding, and a customer's list."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers
from vigil_shared.web import request_session

from .. import commands, invoices
from ..schemas import (
    InvoiceCreateSchema,
    InvoiceListArgs,
    InvoicePageSchema,
    InvoicePatchSchema,
    InvoiceSchema,
    VoidSchema,
)
from .common import context, customer_rule, if_match, invoice_rule, live_customer_rule, loaded, located

blp = Blueprint("invoices", __name__, url_prefix="/api/v1", description="Invoices")


def invoice_body(invoice, location_id):
    return located(invoice, InvoiceSchema, location_id)


def _answer(invoice, location_id, status: int = 200, **headers):
    return invoice_body(invoice, location_id), status, etag_headers(invoice, **headers)


@blp.route("/customers/<int:customer_id>/invoices")
class CustomerInvoices(MethodView):
    @blp.read("billing.view", InvoicePageSchema, rule=customer_rule, query=InvoiceListArgs)
    def get(self, customer_id, page, per_page, status=None):
        """The customer's invoices, newest first (`status=open`: issued or partially paid)."""
        query = invoices.InvoiceQuery(customer_id=customer_id, status=status)
        result = invoices.list_invoices(request_session(), query, page, per_page)
        location_id = loaded().location_id
        return result.answer(lambda invoice: invoice_body(invoice, location_id))

    @blp.create("billing.manage", InvoiceSchema, rule=live_customer_rule, body=InvoiceCreateSchema)
    def post(self, data, customer_id):
        """Create a one-time invoice (a draft, or issued at once with `issue: true`). Amounts are minor
        units; each line's tax is rounded half away from zero. A sub-customer's invoice is owed by its parent."""
        customer = loaded()
        invoice = commands.create_invoice(context(), customer, data)
        location = url_for("invoices.InvoiceItem", invoice_id=invoice.id)
        return _answer(invoice, customer.location_id, 201, Location=location)


ISSUED = "The invoice is issued: it does not change (void it and issue a new one)"


@blp.route("/invoices/<int:invoice_id>")
class InvoiceItem(MethodView):
    @blp.read("billing.view", InvoiceSchema, rule=invoice_rule)
    def get(self, invoice_id):
        """One invoice with its lines, balance and status."""
        scoped = loaded()
        return _answer(scoped.record, scoped.location_id)

    @blp.change("billing.manage", InvoiceSchema, rule=invoice_rule, body=InvoicePatchSchema, conflict=ISSUED)
    def patch(self, changes, invoice_id):
        """Change a draft (its lines replace the old ones)."""
        scoped = loaded()
        return _answer(commands.update_invoice(context(if_match()), scoped, changes), scoped.location_id)

    @blp.remove("billing.manage", rule=invoice_rule, conflict="Only a draft is deleted; an issued invoice is voided")
    def delete(self, invoice_id):
        """Delete a draft."""
        commands.delete_invoice(context(if_match()), loaded())
        return None, 204


@blp.route("/invoices/<int:invoice_id>/issue")
class InvoiceIssue(MethodView):
    @blp.transition("billing.manage", InvoiceSchema, rule=invoice_rule, conflict="The invoice is not a draft")
    def post(self, invoice_id):
        """Issue a draft: it gets the company's next number, today's date and its due date, and is final."""
        scoped = loaded()
        return _answer(commands.issue_invoice(context(if_match()), scoped), scoped.location_id)


NOT_VOIDABLE = "Already void, a draft, or payments are allocated to it"


@blp.route("/invoices/<int:invoice_id>/void")
class InvoiceVoid(MethodView):
    @blp.transition("billing.manage", InvoiceSchema, rule=invoice_rule, optional_body=VoidSchema, conflict=NOT_VOIDABLE)
    def post(self, data, invoice_id):
        """Void an issued invoice nothing is paid on (its number stays used); issue a new one to correct it."""
        scoped = loaded()
        invoice = commands.void_invoice(context(if_match()), scoped, (data or {}).get("reason"))
        return _answer(invoice, scoped.location_id)
