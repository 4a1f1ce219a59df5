"""Celery tasks of the billing service: the customer events that keep its replica current.

``customer.created``/``updated``/``converted`` tell which customers exist, in which office location
(which decides who may see their billing), of which kind, under which parent and whether archived;
``customer.deleted`` removes everything billing holds for the customer;
``customer.archive_requested``/``unarchive_requested`` are billing's part of the archive saga
(:mod:`vigil_billing.archiving`).
"""

from __future__ import annotations

import contextlib
from datetime import date
from typing import Any

from sqlalchemy.orm import Session

from vigil_shared.db import utcnow
from vigil_shared.messaging.contracts import CustomerArchiveRequested, CustomerUnarchiveRequested, Event
from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import accounts, archiving, charging, payments, processor, recurring
from . import customers_replica as replica
from .processor import ProcessorUnavailable


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """The consumer with its handlers, apart from Celery so tests can feed it messages directly."""
    consumer = runtime.consumer()

    replica.follow(consumer, lambda session, customer_id, event: accounts.remove_customer(session, customer_id))

    # the archive saga (docs/archive.md): each runs once per event (the inbox), its report in the same transaction
    @consumer.on(CustomerArchiveRequested)
    def archive_requested(session: Session, event: Event[CustomerArchiveRequested]) -> None:
        archiving.archive(session, runtime.outbox(event.request_id), event.payload, event.occurred_at)

    @consumer.on(CustomerUnarchiveRequested)
    def unarchive_requested(session: Session, event: Event[CustomerUnarchiveRequested]) -> None:
        archiving.unarchive(session, runtime.outbox(event.request_id), event.payload, event.occurred_at)

    return consumer


CHARGE_RETRIES = 8  # the processor unreachable: retried with backoff (≈ 4 minutes), then failed


def charge_payment(runtime: ServiceRuntime, payment_id: int, attempt: int = 1) -> str:
    """Charges a pending payment once (see :func:`vigil_billing.payments.run_charge`)."""
    outbox = runtime.outbox()
    try:
        return payments.run_charge(runtime.db.transaction, outbox, processor.background_processor(), payment_id)
    except ProcessorUnavailable:
        if attempt > CHARGE_RETRIES:
            return payments.fail_payment(
                runtime.db.transaction, outbox, payment_id, "processor_unavailable", "The processor did not answer."
            )
        raise


RUN_DUE_TASK = charging.RUN_DUE_TASK
RUN_DUE_EVERY = 60.0  # seconds between two beat runs


def run_due(runtime: ServiceRuntime, day: date | None = None) -> recurring.RunReport:
    """The beat job: issue due recurring invoices (once per period), run due scheduled payments, and
    charge card payments left pending (their send was lost)."""
    today = day or utcnow().date()
    outbox, adapter = runtime.outbox(), processor.background_processor()
    issued = recurring.run_due_invoices(runtime.db.transaction, outbox, today)
    scheduled = recurring.run_due_payments(runtime.db.transaction, outbox, adapter, today)
    with runtime.db.transaction() as session:
        stale = charging.stale_pending(session)
    for payment_id in stale:
        with contextlib.suppress(ProcessorUnavailable):  # the next run tries again, with the same key
            payments.run_charge(runtime.db.transaction, outbox, adapter, payment_id)
    return recurring.RunReport(issued, scheduled)


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)

    @runtime.celery.task(name=charging.CHARGE_TASK, bind=True, max_retries=CHARGE_RETRIES + 1)
    def charge_payment_task(task: Any, payment_id: int) -> str:
        try:
            return charge_payment(runtime, payment_id, attempt=task.request.retries + 1)
        except ProcessorUnavailable as exc:
            raise task.retry(exc=exc, countdown=min(60, 2 ** (task.request.retries + 1))) from None

    @runtime.celery.task(name=RUN_DUE_TASK)
    def run_due_task(day: str | None = None) -> dict[str, int]:
        report = run_due(runtime, date.fromisoformat(day) if day else None)
        return {"invoices_issued": report.invoices_issued, "scheduled_payments_run": report.scheduled_payments_run}

    runtime.celery.conf.beat_schedule = {
        "billing-run-due": {
            "task": RUN_DUE_TASK,
            "schedule": RUN_DUE_EVERY,
            "options": {"queue": runtime.settings.queue_name()},
        }
    }
