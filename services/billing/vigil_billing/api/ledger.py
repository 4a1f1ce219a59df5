"""A customer's transactions with a running balance, statements (JSON and PDF), and AR aging."""

from __future__ import annotations

from flask import Response
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.errors import validation_problem
from vigil_shared.http import Page
from vigil_shared.web import current_identity, request_session

from .. import commands, ledger
from ..schemas import AgingArgs, AgingPageSchema, StatementArgs, StatementSchema, TransactionArgs, TransactionPageSchema
from .common import context, customer_rule

blp = Blueprint("ledger", __name__, url_prefix="/api/v1", description="Transactions, statements and AR aging")


@blp.route("/customers/<int:customer_id>/transactions")
class Transactions(MethodView):
    @blp.read("billing.view", TransactionPageSchema, rule=customer_rule, query=TransactionArgs)
    def get(self, customer_id, page, per_page, from_=None, to=None):
        """Invoices, voids, payments and refunds, newest first, each with the running balance after it. A
        parent's list includes the invoices of every sub-customer billing through it (`customer_id` names whose)."""
        result = ledger.transactions(request_session(), customer_id, page, per_page, from_, to)
        paged = Page(result.items, page, per_page, result.total)
        return paged.body(), 200, paged.headers()


def _statement(customer_id: int, from_, to):
    if to < from_:
        raise validation_problem({"to": ["Before `from`."]})
    settings = commands.read_settings(context())
    return ledger.statement(request_session(), customer_id, settings.currency, from_, to)


@blp.route("/customers/<int:customer_id>/statements")
class Statement(MethodView):
    @blp.read("billing.view", StatementSchema, rule=customer_rule, query=StatementArgs)
    def get(self, customer_id, from_, to):
        """The statement of a period: opening balance, the period's entries, closing balance."""
        return _statement(customer_id, from_, to)


@blp.route("/customers/<int:customer_id>/statements/pdf")
class StatementPdf(MethodView):
    @blp.read("billing.view", rule=customer_rule, query=StatementArgs, description="The statement as `application/pdf`")
    def get(self, customer_id, from_, to):
        """The same statement as a PDF document."""
        body = ledger.statement_pdf(_statement(customer_id, from_, to))
        return Response(
            body,
            mimetype="application/pdf",
            headers={"Content-Disposition": f'attachment; filename="statement-{customer_id}-{from_}-{to}.pdf"'},
        )


@blp.route("/ar-aging")
class Aging(MethodView):
    @blp.read("billing.view", AgingPageSchema, query=AgingArgs)
    def get(self, page, per_page, location_id=None):
        """What each customer owes on open invoices by age past due (current, 1-30, 31-60, 61-90, over 90 days),
        largest first, in the locations where you hold `billing.view` (`location_id` narrows it)."""
        settings = commands.read_settings(context())
        locations = current_identity().location_filter("billing.view")
        items, total, totals = ledger.ar_aging(
            request_session(), commands.today(), locations, location_id, page, per_page
        )
        paged = Page(items, page, per_page, total)
        return paged.body() | {"totals": totals, "currency": settings.currency}, 200, paged.headers()
