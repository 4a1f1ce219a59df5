"""Recurring invoices and scheduled payments, and the job that runs what is due.

**Exactly once per period.** A recurring invoice issues its period ``P`` as an invoice whose
``period_key`` is ``"<template id>:<P>"``, unique among invoices. The job issues due templates in
set-based batches (:func:`issue_batch`): one transaction locks a batch of templates (``FOR UPDATE
SKIP LOCKED``), skips the periods whose key exists, takes the invoice numbers as one block from the
counter and writes the invoices, lines, events, ledger postings and the templates' next dates with
one statement per table. A second job (beat firing twice, an operator's run, a redelivered task)
skips the locked templates and finds the committed ones no longer due; a worker killed mid-batch
commits nothing. Whatever happens, a period is invoiced once: the lock and the key, not timing,
guarantee it.

**Scheduled payments.** When due, an attempt becomes a card/ach payment with the processor key
``"vigil-scheduled-<id>-<attempt>"``, charged like any other (:func:`payments.run_charge`: at most
once per key). A soft decline (insufficient funds, processor unreachable) is retried after
``RETRY_DAYS``; a hard decline, or the last soft one, fails it with the processor's reason.

Parent/sub: a sub-customer's *new* recurring invoice bills its parent (``bill_to_customer_id``),
fixed on the template, so linking or unlinking later changes nothing already set up or billed.
"""

from __future__ import annotations

import calendar
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil_shared.db import added, utcnow
from vigil_shared.errors import conflict, get_or_404, validation_problem
from vigil_shared.http import Page, paginate
from vigil_shared.messaging.contracts import InvoiceIssued
from vigil_shared.messaging.outbox import Outbox

from . import bulk, company, invoices, ledger, payments
from .models import (
    BillingMethod,
    Invoice,
    InvoiceLine,
    KnownCustomer,
    Payment,
    RecurringInvoice,
    ScheduledPayment,
)
from .money import MAX_AMOUNT
from .processor import Processor, ProcessorUnavailable

log = logging.getLogger("vigil.billing.recurring")
RETRY_DAYS = (1, 3, 5)  # after the 1st, 2nd and 3rd soft decline; the 4th fails the scheduled payment
SOFT_FAILURES = frozenset({"insufficient_funds", "processor_unavailable"})
BATCH = 1000  # templates issued per transaction by the job
CLASHES = 10  # batches one run redoes after a concurrent run's unique-key clash, before giving up
CATCH_UP_LIMIT = 36  # periods one run issues for one template at most (a template created far in the past)
# How far back a new template may start: its past periods are all invoiced at the next run, so a mistyped
# year (0026 for 2026) would bill a customer thousands of periods; a year covers a late set-up.
BACKDATING_MONTHS = 12


def add_months(day: date, months: int, anchor_day: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


# --- recurring invoices ---------------------------------------------------------------------------------


def earliest_start(today: date) -> date:
    return add_months(today, -BACKDATING_MONTHS, today.day)


def create_recurring(session: Session, customer: KnownCustomer, data: dict[str, Any], today: date) -> RecurringInvoice:
    if data["start_date"] < earliest_start(today):
        raise validation_problem(
            {"start_date": [f"At most {BACKDATING_MONTHS} months ago: every period since then is invoiced at once."]}
        )
    if data.get("end_date") and data["end_date"] < data["start_date"]:
        raise validation_problem({"end_date": ["Before the start date."]})
    template = RecurringInvoice(
        customer_id=customer.customer_id,
        bill_to_customer_id=invoices.bill_to(customer, data.get("bill_to_parent", True)),
        lines=[dict(line) for line in data["lines"]],
        memo=data.get("memo"),
        interval_months=data.get("interval_months", 1),
        start_date=data["start_date"],
        next_date=data["start_date"],
        end_date=data.get("end_date"),
        remaining=data.get("count"),
        status="active",
    )
    return added(session, template)


def get_recurring(session: Session, recurring_id: int) -> RecurringInvoice:
    return get_or_404(session, RecurringInvoice, recurring_id, "recurring invoice")


def cancel_recurring(session: Session, template: RecurringInvoice) -> RecurringInvoice:
    """Idempotent: an ended or cancelled template is answered as it is."""
    if template.status == "active":
        template.status = "cancelled"
        template.next_date = None
        session.flush()
    return template


def list_recurring(session: Session, customer_id: int, page: int, per_page: int, active: bool | None) -> Page:
    statement: Select[Any] = (
        select(RecurringInvoice).where(RecurringInvoice.customer_id == customer_id).order_by(RecurringInvoice.id)
    )
    if active is not None:
        statement = statement.where((RecurringInvoice.status == "active") == active)
    return paginate(session, statement, page, per_page)


@dataclass
class _Period:
    template_id: int
    customer_id: int
    bill_to_customer_id: int
    memo: str | None
    lines: list[dict[str, Any]]
    day: date

    @property
    def key(self) -> str:
        return f"{self.template_id}:{self.day.isoformat()}"


def _periods(template: Any, today: date) -> tuple[list[date], dict[str, Any]]:
    """The template's due periods (at most ``CATCH_UP_LIMIT``) and its state after issuing them."""
    days: list[date] = []
    next_date, remaining, status = template.next_date, template.remaining, "active"
    while len(days) < CATCH_UP_LIMIT and next_date is not None and next_date <= today:
        days.append(next_date)
        next_date = add_months(next_date, template.interval_months, template.start_date.day)
        if remaining is not None:
            remaining -= 1
        if (remaining is not None and remaining <= 0) or (
            template.end_date is not None and next_date > template.end_date
        ):
            status, next_date = "ended", None
    return days, {"id": template.id, "next_date": next_date, "remaining": remaining, "status": status}


def _existing_keys(session: Session, keys: list[str]) -> set[str]:
    return set(session.scalars(select(Invoice.period_key).where(bulk.one_of(session, Invoice.period_key, keys))))


def issue_batch(session: Session, outbox: Outbox, today: date, after: int, limit: int) -> tuple[int, int | None]:
    """Issues every due period of the next ``limit`` due templates after id ``after``, set-based, in the
    caller's transaction; returns ``(invoices created, last template id)`` (None: nothing was due).

    The templates are locked (``FOR UPDATE SKIP LOCKED``: a concurrent run takes other ones, and a
    template it has moved on is no longer due when its lock is released), the periods whose key
    already exists are skipped, the numbers are one block from the counter, and the invoices, their
    lines, the ``invoice.issued`` events, the ledger postings and the templates' new state are each
    written by one statement. A run killed before the commit leaves nothing; the unique period key
    stops whatever else would issue a period twice.
    """
    templates = session.execute(
        select(
            RecurringInvoice.id,
            RecurringInvoice.customer_id,
            RecurringInvoice.bill_to_customer_id,
            RecurringInvoice.lines,
            RecurringInvoice.memo,
            RecurringInvoice.interval_months,
            RecurringInvoice.start_date,
            RecurringInvoice.next_date,
            RecurringInvoice.end_date,
            RecurringInvoice.remaining,
        )
        .where(RecurringInvoice.status == "active", RecurringInvoice.next_date <= today, RecurringInvoice.id > after)
        .order_by(RecurringInvoice.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not templates:
        return 0, None
    periods: list[_Period] = []
    moves = []
    for template in templates:
        days, move = _periods(template, today)
        moves.append(move)
        periods.extend(
            _Period(template.id, template.customer_id, template.bill_to_customer_id, template.memo, template.lines, day)
            for day in days
        )
    existing = _existing_keys(session, [period.key for period in periods])
    periods = [period for period in periods if period.key not in existing]
    if existing:
        log.info("periods already issued", extra={"count": len(existing)})
    if periods:
        _issue(session, outbox, periods)
    table = bulk.table_of(RecurringInvoice)
    now = utcnow()
    bulk.update_rows(session, table, "id", [move | {"updated_at": now} for move in moves], version=table.c.version + 1)
    return len(periods), templates[-1].id


def _issue(session: Session, outbox: Outbox, periods: list[_Period]) -> None:
    settings = company.settings_of(session)
    first = invoices.next_numbers(session, len(periods))
    now = utcnow()
    rows, lines_of = [], {}
    for offset, period in enumerate(periods):
        lines = invoices.line_values(period.lines, settings.tax_rate_bp)
        subtotal = sum(line["amount"] for line in lines)
        tax = sum(line["tax"] for line in lines)
        total = subtotal + tax
        if total > MAX_AMOUNT:
            raise validation_problem({"lines": ["The invoice total is too large."]})
        lines_of[period.key] = lines
        rows.append(
            {
                "customer_id": period.customer_id,
                "bill_to_customer_id": period.bill_to_customer_id,
                "status": "paid" if total == 0 else "issued",
                "number": first + offset,
                "currency": settings.currency,
                "issue_date": period.day,
                "due_date": period.day + timedelta(days=settings.payment_terms_days),
                "memo": period.memo,
                "subtotal": subtotal,
                "tax_total": tax,
                "total": total,
                "amount_paid": 0,
                "recurring_invoice_id": period.template_id,
                "period_key": period.key,
                "created_at": now,
                "updated_at": now,
                "version": 1,
            }
        )
    created = bulk.insert_rows(session, bulk.table_of(Invoice), rows, returning=("period_key", "id"))
    ids: dict[str, int] = {key: invoice_id for key, invoice_id in created}
    bulk.insert_rows(
        session,
        bulk.table_of(InvoiceLine),
        [line | {"invoice_id": ids[key]} for key, lines in lines_of.items() for line in lines],
    )
    ledger.post_issued(session, first, first + len(periods) - 1)
    events = outbox.event_rows(
        [
            InvoiceIssued(
                invoice_id=ids[row["period_key"]],
                customer_id=row["customer_id"],
                number=row["number"],
                total=row["total"],
                currency=row["currency"],
                due_date=row["due_date"].isoformat(),
                bill_to_customer_id=row["bill_to_customer_id"]
                if row["bill_to_customer_id"] != row["customer_id"]
                else None,
            )
            for row in rows
        ]
    )
    bulk.insert_rows(session, bulk.table_of(outbox.models.OutboxEvent), events)


def run_due_invoices(transaction: Callable[[], Any], outbox: Outbox, today: date, batch: int = BATCH) -> int:
    """Issues every due period of every active template, ``batch`` templates per transaction."""
    created, after, clashes = 0, 0, 0
    while True:
        try:
            with transaction() as session:
                issued, last = issue_batch(session, outbox, today, after, batch)
        except IntegrityError:
            # a concurrent run issued some of these periods first (SQLite has no row locks to skip):
            # the batch rolled back whole, and redone it finds them issued or no longer due
            clashes += 1
            if clashes > CLASHES:
                raise
            log.info("batch redone after a concurrent run", extra={"after": after})
            continue
        if last is None:
            return created
        created, after = created + issued, last


# --- scheduled payments ---------------------------------------------------------------------------------


def create_scheduled(session: Session, customer: KnownCustomer, data: dict[str, Any], today: date) -> ScheduledPayment:
    if customer.parent_id:
        raise payments.parent_only(customer)
    method = session.get(BillingMethod, data["billing_method_id"])
    if method is None or method.customer_id != customer.customer_id:
        raise validation_problem({"billing_method_id": ["Not a billing method of this customer."]})
    if data["due_date"] < today:
        raise validation_problem({"due_date": ["A scheduled payment is due today or later."]})
    scheduled = ScheduledPayment(
        customer_id=customer.customer_id,
        billing_method_id=method.id,
        amount=data["amount"],
        due_date=data["due_date"],
        next_attempt_on=data["due_date"],
        attempts=0,
        status="scheduled",
    )
    return added(session, scheduled)


def get_scheduled(session: Session, scheduled_id: int) -> ScheduledPayment:
    return get_or_404(session, ScheduledPayment, scheduled_id, "scheduled payment")


def cancel_scheduled(session: Session, scheduled: ScheduledPayment) -> ScheduledPayment:
    """Idempotent for a cancelled one; one whose attempt is being charged, or done, is not cancelled."""
    if scheduled.status == "cancelled":
        return scheduled
    if scheduled.status != "scheduled":
        raise conflict(f"The scheduled payment is {scheduled.status}: it can no longer be cancelled.")
    scheduled.status = "cancelled"
    scheduled.next_attempt_on = None
    session.flush()
    return scheduled


def list_scheduled(session: Session, customer_id: int, page: int, per_page: int, active: bool | None) -> Page:
    statement: Select[Any] = (
        select(ScheduledPayment).where(ScheduledPayment.customer_id == customer_id).order_by(ScheduledPayment.id)
    )
    if active is not None:
        live = ScheduledPayment.status.in_(("scheduled", "processing"))
        statement = statement.where(live if active else ~live)
    return paginate(session, statement, page, per_page)


def _lock(session: Session, scheduled_id: int) -> ScheduledPayment | None:
    return session.scalars(
        select(ScheduledPayment).where(ScheduledPayment.id == scheduled_id).with_for_update()
    ).one_or_none()


def run_scheduled(
    transaction: Callable[[], Any], outbox: Outbox, processor: Processor, scheduled_id: int, today: date
) -> str:
    with transaction() as session:
        scheduled = _lock(session, scheduled_id)
        if scheduled is None or scheduled.status not in ("scheduled", "processing"):
            return "gone" if scheduled is None else scheduled.status
        if scheduled.next_attempt_on is None or scheduled.next_attempt_on > today:
            return scheduled.status
        if scheduled.status == "scheduled":  # a new attempt: its own payment and processor key
            method = session.get(BillingMethod, scheduled.billing_method_id)
            if method is None:
                scheduled.status, scheduled.next_attempt_on = "failed", None
                scheduled.failure_code, scheduled.failure_message = "billing_method_removed", "The card was removed."
                return scheduled.status
            attempt = scheduled.attempts + 1
            payment = Payment(
                customer_id=scheduled.customer_id,
                method=method.kind,
                billing_method_id=method.id,
                amount=scheduled.amount,
                currency=company.settings_of(session).currency,
                status="pending",
                processor_key=f"vigil-scheduled-{scheduled.id}-{attempt}",
                memo=f"Scheduled payment {scheduled.id}, attempt {attempt}",
                amount_refunded=0,
                unallocated=0,
                allocate_to=[],
            )
            added(session, payment)
            scheduled.payment_id, scheduled.attempts, scheduled.status = payment.id, attempt, "processing"
        payment_id = scheduled.payment_id
    assert payment_id is not None
    try:
        payments.run_charge(transaction, outbox, processor, payment_id)
    except ProcessorUnavailable:
        payments.fail_payment(transaction, outbox, payment_id, "processor_unavailable", "The processor did not answer.")
    with transaction() as session:
        scheduled = _lock(session, scheduled_id)
        payment = session.get(Payment, payment_id)
        if scheduled is None or payment is None or scheduled.status != "processing":
            return "gone" if scheduled is None else scheduled.status
        if payment.status == "succeeded":
            scheduled.status, scheduled.next_attempt_on = "succeeded", None
        elif payment.status == "failed":
            soft = payment.failure_code in SOFT_FAILURES
            if soft and scheduled.attempts <= len(RETRY_DAYS):
                scheduled.status = "scheduled"
                scheduled.next_attempt_on = today + timedelta(days=RETRY_DAYS[scheduled.attempts - 1])
            else:
                scheduled.status, scheduled.next_attempt_on = "failed", None
            scheduled.failure_code, scheduled.failure_message = payment.failure_code, payment.failure_message
        return scheduled.status


def run_due_payments(transaction: Callable[[], Any], outbox: Outbox, processor: Processor, today: date) -> int:
    with transaction() as session:
        ids = list(
            session.scalars(
                select(ScheduledPayment.id)
                .where(
                    ScheduledPayment.status.in_(("scheduled", "processing")),
                    ScheduledPayment.next_attempt_on <= today,
                )
                .order_by(ScheduledPayment.id)
            )
        )
    for scheduled_id in ids:
        run_scheduled(transaction, outbox, processor, scheduled_id, today)
    return len(ids)


@dataclass(frozen=True)
class RunReport:
    invoices_issued: int
    scheduled_payments_run: int
