"""Recurring invoices and scheduled payments: create, list (active ones: the archive hook), cancel
idempotently; and asking the worker to run the due job now."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers
from vigil_shared.web import request_session

from .. import commands, recurring
from ..schemas import (
    ActiveArgs,
    RecurringCreateSchema,
    RecurringPageSchema,
    RecurringSchema,
    RunDueSchema,
    ScheduledCreateSchema,
    ScheduledPageSchema,
    ScheduledSchema,
)
from .common import (
    context,
    customer_rule,
    if_match,
    live_customer_rule,
    loaded,
    located,
    recurring_rule,
    scheduled_rule,
)

blp = Blueprint("recurring", __name__, url_prefix="/api/v1", description="Recurring invoices and scheduled payments")


def _listed(result, schema):
    """A customer's page of recurring invoices or scheduled payments, each with the customer's location."""
    location_id = loaded().location_id
    return result.answer(lambda record: located(record, schema, location_id))


def _created(create, data, schema, endpoint: str, id_name: str):
    """A new recurring invoice or scheduled payment of the URL's customer (``create`` is its command)."""
    customer = loaded()
    record = create(context(), customer, data)
    location = url_for(endpoint, **{id_name: record.id})
    return located(record, schema, customer.location_id), 201, etag_headers(record, Location=location)


def _cancelled(record, schema):
    location_id = commands.customer_location(context(), record.customer_id)
    return located(record, schema, location_id), 200, etag_headers(record)


@blp.route("/customers/<int:customer_id>/recurring-invoices")
class CustomerRecurring(MethodView):
    @blp.read("billing.view", RecurringPageSchema, rule=customer_rule, query=ActiveArgs)
    def get(self, customer_id, page, per_page, active=None):
        """The customer's recurring invoices (`active=true`: those archiving would cancel)."""
        return _listed(
            recurring.list_recurring(request_session(), customer_id, page, per_page, active), RecurringSchema
        )

    @blp.create("billing.manage", RecurringSchema, rule=live_customer_rule, body=RecurringCreateSchema)
    def post(self, data, customer_id):
        """Set up a recurring invoice: issued every `interval_months` from `start_date`, once per period,
        until `end_date` or `count` issues. A sub-customer's new one bills its parent. `start_date` may be
        up to 12 months ago (every period since it is invoiced at the next run), not earlier."""
        endpoint = "recurring.RecurringCancel"
        return _created(commands.create_recurring, data, RecurringSchema, endpoint, "recurring_invoice_id")


@blp.route("/recurring-invoices/<int:recurring_invoice_id>/cancel")
class RecurringCancel(MethodView):
    @blp.transition("billing.manage", RecurringSchema, rule=recurring_rule)
    def post(self, recurring_invoice_id):
        """Stop a recurring invoice (idempotent: a stopped one answers as it is). Invoices issued stay."""
        return _cancelled(commands.cancel_recurring(context(if_match()), loaded()), RecurringSchema)


SUB_CUSTOMER = "A sub-customer: payments are received on the parent"


@blp.route("/customers/<int:customer_id>/scheduled-payments")
class CustomerScheduled(MethodView):
    @blp.read("billing.view", ScheduledPageSchema, rule=customer_rule, query=ActiveArgs)
    def get(self, customer_id, page, per_page, active=None):
        """The customer's scheduled payments (`active=true`: future ones, which archiving cancels)."""
        return _listed(
            recurring.list_scheduled(request_session(), customer_id, page, per_page, active), ScheduledSchema
        )

    @blp.create(
        "payments.create", ScheduledSchema, rule=live_customer_rule, body=ScheduledCreateSchema, conflict=SUB_CUSTOMER
    )
    def post(self, data, customer_id):
        """Schedule a charge of a billing method on `due_date`; soft declines are retried after 1, 3 and 5 days."""
        endpoint = "recurring.ScheduledCancel"
        return _created(commands.create_scheduled, data, ScheduledSchema, endpoint, "scheduled_payment_id")


NOT_CANCELLABLE = "Being charged or done: it can no longer be cancelled"


@blp.route("/scheduled-payments/<int:scheduled_payment_id>/cancel")
class ScheduledCancel(MethodView):
    @blp.transition("payments.create", ScheduledSchema, rule=scheduled_rule, conflict=NOT_CANCELLABLE)
    def post(self, scheduled_payment_id):
        """Cancel a future scheduled payment (idempotent: a cancelled one answers as it is)."""
        return _cancelled(commands.cancel_scheduled(context(if_match()), loaded()), ScheduledSchema)


@blp.route("/billing/run-due")
class RunDue(MethodView):
    @blp.operation("ops.manage", status=202, optional_body=RunDueSchema)
    def post(self, data):
        """Ask the billing worker to run the due job now (the beat runs it every minute): recurring invoices
        due by `date` are issued once per period, due scheduled payments charged."""
        commands.request_run_due(context(), (data or {}).get("date"))
        return {"status": "pending"}, 202
