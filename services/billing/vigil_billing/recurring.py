"""Recurring invoices and scheduled payments, and the job that runs what is due.

**Exactly once per period.** A recurring invoice issues its period ``P`` as an invoice whose
``period_key`` is ``"<template id>:<P>"``, unique among invoices. The job handles one template per
short transaction, holding the template's row lock, and checks the key before inserting; a second
job (beat firing twice, an operator's run, a worker killed and its task redelivered) finds the
period issued — or, racing, loses on the unique key and rolls back — and only moves on. Whatever
happens, a period is invoiced once: the key, not timing, guarantees it.

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

from vigil_shared.errors import conflict, get_or_404, validation_problem
from vigil_shared.http import Page, paginate
from vigil_shared.messaging.outbox import Outbox

from . import company, invoices, payments
from .models import BillingMethod, Invoice, KnownCustomer, Payment, RecurringInvoice, ScheduledPayment
from .processor import Processor, ProcessorUnavailable

log = logging.getLogger("vigil.billing.recurring")
RETRY_DAYS = (1, 3, 5)  # after the 1st, 2nd and 3rd soft decline; the 4th fails the scheduled payment
SOFT_FAILURES = frozenset({"insufficient_funds", "processor_unavailable"})
GROUP = 100  # templates issued per transaction by the job
CATCH_UP_LIMIT = 36  # periods one run issues for one template at most (a template created far in the past)


def add_months(day: date, months: int, anchor_day: int) -> date:
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    return date(year, month, min(anchor_day, calendar.monthrange(year, month)[1]))


# --- recurring invoices ---------------------------------------------------------------------------------


def create_recurring(session: Session, customer: KnownCustomer, data: dict[str, Any]) -> RecurringInvoice:
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
    session.add(template)
    session.flush()
    return template


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


def issue_period(session: Session, outbox: Outbox, template_id: int, today: date) -> int:
    """Issues the due periods of one template (locked); returns how many invoices it created."""
    template = session.scalars(
        select(RecurringInvoice).where(RecurringInvoice.id == template_id).with_for_update()
    ).one_or_none()
    created = 0
    for _ in range(CATCH_UP_LIMIT):
        if template is None or template.status != "active" or template.next_date is None:
            break
        period = template.next_date
        if period > today:
            break
        key = f"{template.id}:{period.isoformat()}"
        if session.scalar(select(Invoice.id).where(Invoice.period_key == key)) is None:
            settings = company.settings_of(session)
            invoice = Invoice(
                customer_id=template.customer_id,
                bill_to_customer_id=template.bill_to_customer_id,
                status="draft",
                currency=settings.currency,
                memo=template.memo,
                amount_paid=0,
                recurring_invoice_id=template.id,
                period_key=key,
            )
            invoices._set_lines(invoice, invoices._lines(template.lines, settings.tax_rate_bp))
            session.add(invoice)
            session.flush()
            invoices.issue(session, outbox, invoice, period)
            created += 1
        template.next_date = add_months(period, template.interval_months, template.start_date.day)
        if template.remaining is not None:
            template.remaining -= 1
        if (template.remaining is not None and template.remaining <= 0) or (
            template.end_date is not None and template.next_date > template.end_date
        ):
            template.status, template.next_date = "ended", None
    session.flush()
    return created


def run_due_invoices(transaction: Callable[[], Any], outbox: Outbox, today: date, batch: int = 1000) -> int:
    """Issues every due period of every active template, one template per transaction."""
    created, after = 0, 0
    while True:
        with transaction() as session:
            ids = list(
                session.scalars(
                    select(RecurringInvoice.id)
                    .where(
                        RecurringInvoice.status == "active",
                        RecurringInvoice.next_date <= today,
                        RecurringInvoice.id > after,
                    )
                    .order_by(RecurringInvoice.id)
                    .limit(batch)
                )
            )
        if not ids:
            return created
        for start in range(0, len(ids), GROUP):
            group = ids[start : start + GROUP]
            try:  # a group of templates per transaction (fewer commits); each still under its row lock
                with transaction() as session:
                    created += sum(issue_period(session, outbox, template_id, today) for template_id in group)
                continue
            except IntegrityError:  # a concurrent run issued a period first: redo the group one by one
                pass
            for template_id in group:
                try:
                    with transaction() as session:
                        created += issue_period(session, outbox, template_id, today)
                except IntegrityError:  # issued by the other run: it is done, once
                    log.info("period already issued", extra={"recurring_invoice_id": template_id})
        after = ids[-1]


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
    session.add(scheduled)
    session.flush()
    return scheduled


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
            session.add(payment)
            session.flush()
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
