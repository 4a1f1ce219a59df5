"""The billing service as a participant of the archive saga (docs/archive.md).

On ``customer.archive_requested`` it marks each customer archived in its replica (so every billing
write under it is refused from then on) and cancels the customer's active recurring invoices and
scheduled payments not charged yet, each stamped with the archive operation's id. On
``customer.unarchive_requested`` it makes the customers writable again and, when asked, restores
exactly the items those archive operations cancelled that still make sense: a recurring invoice
resumes at its next period from today (never back-billing the periods spent archived, and not past
its end), a scheduled payment only while its date is still ahead. Each customer's step is reported
with ``operation.step_done`` from the outbox, in the same transaction as its effect. Running either
twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.archived import items_by_customer, report_archive_step, report_unarchive_step
from vigil_shared.db import utcnow
from vigil_shared.messaging.contracts import CustomerArchiveRequested, CustomerUnarchiveRequested
from vigil_shared.messaging.outbox import Outbox

from . import customers_replica as replica
from . import recurring
from .models import RecurringInvoice, ScheduledPayment

PARTICIPANT = "billing"
Item = RecurringInvoice | ScheduledPayment


def _active(session: Session, customer_ids: Iterable[int], *, lock: bool = False) -> list[Item]:
    """The customers' active recurring invoices, then their scheduled payments not charged yet."""
    ids = list(customer_ids)
    found: list[Item] = []
    for model, live in ((RecurringInvoice, "active"), (ScheduledPayment, "scheduled")):
        statement = select(model).where(model.customer_id.in_(ids), model.status == live).order_by(model.id)
        if lock:
            statement = statement.with_for_update()
        found.extend(session.scalars(statement))
    return found


def _stamped(session: Session, customer_ids: list[int], operation_ids: list[str]) -> list[Item]:
    found: list[Item] = []
    for model in (RecurringInvoice, ScheduledPayment):
        found.extend(
            session.scalars(
                select(model)
                .where(
                    model.customer_id.in_(customer_ids),
                    model.status == "cancelled",
                    model.cancelled_by_operation.in_(operation_ids),
                )
                .order_by(model.id)
                .with_for_update()
            )
        )
    return found


def _item(record: Item) -> dict[str, Any]:
    if isinstance(record, RecurringInvoice):
        return {
            "type": "recurring_invoice",
            "id": record.id,
            "customer_id": record.customer_id,
            "next_date": record.next_date.isoformat() if record.next_date else None,
            "interval_months": record.interval_months,
            "link": f"/api/v1/customers/{record.customer_id}/recurring-invoices",
        }
    return {
        "type": "scheduled_payment",
        "id": record.id,
        "customer_id": record.customer_id,
        "due_date": record.due_date.isoformat(),
        "amount": record.amount,
        "link": f"/api/v1/customers/{record.customer_id}/scheduled-payments",
    }


def archive_items(session: Session, customer_ids: list[int]) -> list[dict[str, Any]]:
    """What archiving these customers would cancel here: active recurring invoices, future scheduled payments."""
    return [_item(record) for record in _active(session, customer_ids)]


def archive(session: Session, outbox: Outbox, request: CustomerArchiveRequested, as_of: datetime) -> None:
    cancelled = items_by_customer(request.customer_ids)
    for record in _active(session, request.customer_ids, lock=True):
        entry = _item(record)  # as it was: the period or date archiving called off
        if isinstance(record, RecurringInvoice):
            recurring.cancel_recurring(session, record)
        else:
            recurring.cancel_scheduled(session, record)
        record.cancelled_by_operation = request.operation_id
        cancelled[record.customer_id].append(entry)
    session.flush()
    report_archive_step(session, outbox, PARTICIPANT, request, replica.customer_archived, as_of, cancelled)


def unarchive(session: Session, outbox: Outbox, request: CustomerUnarchiveRequested, as_of: datetime) -> None:
    restored = items_by_customer(request.customer_ids)
    skipped = items_by_customer(request.customer_ids)
    if request.restore_cancelled and request.archive_operation_ids:
        today = utcnow().date()
        for record in _stamped(session, request.customer_ids, request.archive_operation_ids):
            reason = _restore(record, today)
            record.cancelled_by_operation = None  # restored, or cancelled for good: never looked at again
            entry = _item(record)
            if reason is None:
                restored[record.customer_id].append(entry)
            else:
                skipped[record.customer_id].append(entry | {"reason": reason})
        session.flush()
    report_unarchive_step(session, outbox, PARTICIPANT, request, replica.customer_archived, as_of, restored, skipped)


def next_period(template: RecurringInvoice, today: date) -> date:
    """The template's first period date on or after ``today`` (its periods run from its start date)."""
    if template.start_date >= today:
        return template.start_date
    months = (today.year - template.start_date.year) * 12 + today.month - template.start_date.month
    steps = max(0, months // template.interval_months - 1)
    period = recurring.add_months(template.start_date, steps * template.interval_months, template.start_date.day)
    while period < today:
        steps += 1
        period = recurring.add_months(template.start_date, steps * template.interval_months, template.start_date.day)
    return period


def _restore(record: Item, today: date) -> str | None:
    """Makes a cancelled item live again; the reason it cannot be, or None once it is."""
    if isinstance(record, ScheduledPayment):
        if record.due_date <= today:
            return "its date has passed"
        record.status, record.next_attempt_on = "scheduled", record.due_date
        return None
    period = next_period(record, today)
    if record.end_date is not None and period > record.end_date:
        return "it ended while the customer was archived"
    if record.remaining is not None and record.remaining <= 0:
        return "every issue was made"
    record.status, record.next_date = "active", period
    return None
