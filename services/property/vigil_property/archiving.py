"""The property service as a participant of the archive saga (docs/archive.md).

On ``customer.archive_requested`` it marks each customer archived in its replica (so every write
under it is refused here too) and cancels the customer's future scheduled appointments, each
stamped with the archive operation's id; on ``customer.unarchive_requested`` it makes the customers
writable again and, when asked, restores exactly the appointments those archive operations
cancelled that still make sense (still in the future, technician still free). Each customer's step
is reported with ``operation.step_done`` from the outbox, in the same transaction as its effect.
Running either twice changes nothing the second time.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.archived import items_by_customer, report_archive_step, report_unarchive_step
from vigil_shared.db import utcnow
from vigil_shared.errors import Problem
from vigil_shared.messaging.contracts import CustomerArchiveRequested, CustomerUnarchiveRequested
from vigil_shared.messaging.outbox import Outbox

from . import appointments, history, writes
from . import customers_replica as replica
from .history import Actor
from .models import Appointment, Property

PARTICIPANT = "property"
ARCHIVE_REASON = "Customer archived"


def _future_scheduled(session: Session, customer_ids: Iterable[int], *, lock: bool = False) -> list[Any]:
    statement = (
        select(Appointment, Property.customer_id)
        .join(Property, Property.id == Appointment.property_id)
        .where(
            Property.customer_id.in_(list(customer_ids)),
            Appointment.status == "scheduled",
            Appointment.starts_at > utcnow(),
        )
        .order_by(Appointment.starts_at, Appointment.id)
    )
    if lock:
        statement = statement.with_for_update(of=Appointment)
    return list(session.execute(statement).all())


def _item(appointment: Appointment, customer_id: int) -> dict[str, Any]:
    return {
        "type": "appointment",
        "id": appointment.id,
        "customer_id": customer_id,
        "property_id": appointment.property_id,
        "kind": appointment.type,
        "starts_at": appointment.starts_at.isoformat().replace("+00:00", "Z"),
        "link": f"/api/v1/appointments/{appointment.id}",
    }


def archive_items(session: Session, customer_ids: list[int]) -> list[dict[str, Any]]:
    """What archiving these customers would cancel here: their future appointments (tech and sale)."""
    return [_item(appointment, customer_id) for appointment, customer_id in _future_scheduled(session, customer_ids)]


def archive(session: Session, outbox: Outbox, request: CustomerArchiveRequested, as_of: datetime, actor: Actor) -> None:
    rows = _future_scheduled(session, request.customer_ids, lock=True)
    cancelled = items_by_customer(request.customer_ids)
    for appointment, customer_id in rows:
        appointments.cancel(session, appointment, ARCHIVE_REASON, actor)
        appointment.cancelled_by_operation = request.operation_id
        cancelled[customer_id].append(_item(appointment, customer_id))
    writes.flush(session)
    report_archive_step(session, outbox, PARTICIPANT, request, replica.customer_archived, as_of, cancelled)


def unarchive(
    session: Session, outbox: Outbox, request: CustomerUnarchiveRequested, as_of: datetime, actor: Actor
) -> None:
    restored = items_by_customer(request.customer_ids)
    skipped = items_by_customer(request.customer_ids)
    if request.restore_cancelled and request.archive_operation_ids:
        rows = session.execute(
            select(Appointment, Property.customer_id)
            .join(Property, Property.id == Appointment.property_id)
            .where(
                Property.customer_id.in_(request.customer_ids),
                Appointment.status == "cancelled",
                Appointment.cancelled_by_operation.in_(request.archive_operation_ids),
            )
            .order_by(Appointment.starts_at, Appointment.id)
            .with_for_update(of=Appointment)
        ).all()
        for appointment, customer_id in rows:
            reason = _restore(session, appointment, actor)
            entry = _item(appointment, customer_id)
            if reason is None:
                restored[customer_id].append(entry)
            else:
                skipped[customer_id].append(entry | {"reason": reason})
    report_unarchive_step(session, outbox, PARTICIPANT, request, replica.customer_archived, as_of, restored, skipped)


def _restore(session: Session, appointment: Appointment, actor: Actor) -> str | None:
    """Schedules a cancelled appointment again; the reason it cannot be, or None once it is."""
    if appointment.starts_at <= utcnow():
        appointment.cancelled_by_operation = None  # its time has passed: it stays cancelled, for good
        return "in the past"
    appointment.status = "scheduled"
    try:
        appointments.ensure_technician_free(session, appointment)
    except Problem:
        appointment.status = "cancelled"
        appointment.cancelled_by_operation = None
        return "the technician is booked at that time"
    appointment.cancel_reason = None
    appointment.cancelled_at = None
    appointment.cancelled_by = None
    appointment.cancelled_by_operation = None
    history.record(
        session,
        appointment.property_id,
        "appointment_restored",
        actor,
        subject=f"appointment {appointment.id}",
        field="status",
        old="cancelled",
        new="scheduled",
        reason="Customer unarchived",
    )
    writes.flush(session)
    return None
