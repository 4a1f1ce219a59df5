"""Appointments at properties: scheduling without double-booking a technician, and clean cancellation.

A technician cannot be in two places at once: a new or moved appointment overlapping another one of
the same technician that is not cancelled answers 409. On PostgreSQL the check runs under a
transaction-scoped advisory lock per technician, so two concurrent bookings cannot both pass it; on
SQLite the write lock taken by the insert does the same. ``cancel`` is the one way to call a visit
off, with a reason; the archive cascade will use it too.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select, text
from sqlalchemy.orm import Session

from vigil_shared.db import Condition, filtered, utcnow
from vigil_shared.errors import conflict, get_or_404, validation_problem
from vigil_shared.http import Page, paginate

from . import history, writes
from .history import Actor
from .models import Appointment, KnownCustomer, Property
from .properties import ensure_editable

SCHEDULING_LOCK_NAMESPACE = 0x56494731  # "VIG1": first key of pg_advisory_xact_lock(ns, technician_id)
EDITABLE = ("type", "starts_at", "ends_at", "technician_id", "notes")
SORTS = {"starts_at": Appointment.starts_at.asc(), "-starts_at": Appointment.starts_at.desc()}


def get_appointment(session: Session, appointment_id: int) -> Appointment:
    return get_or_404(session, Appointment, appointment_id, "appointment")


# The appointment list's filters; ``from_``/``to`` keep those overlapping that window.
FILTERS: dict[str, Condition] = {
    "property_id": lambda property_id: Appointment.property_id == property_id,
    "customer_id": lambda customer_id: Property.customer_id == customer_id,
    "technician": lambda technician: Appointment.technician_id == technician,
    "from_": lambda from_: Appointment.ends_at > from_,
    "to": lambda to: Appointment.starts_at < to,
    "status": lambda status: Appointment.status == status,
    "type": lambda type_: Appointment.type == type_,
}


def list_appointments(
    session: Session,
    *,
    locations: frozenset[int] | None,
    page: int,
    per_page: int,
    sort: str = "starts_at",
    **filters: int | datetime | str | None,
) -> Page:
    """Appointments in the caller's locations, narrowed by :data:`FILTERS`."""
    statement = (
        select(Appointment)
        .join(Property, Property.id == Appointment.property_id)
        .join(KnownCustomer, KnownCustomer.customer_id == Property.customer_id)
        .where(KnownCustomer.deleted.is_(False))
    )
    if locations is not None:
        statement = statement.where(KnownCustomer.location_id.in_(sorted(locations)))
    statement = filtered(statement, FILTERS, filters)
    return paginate(session, statement.order_by(SORTS[sort], Appointment.id.asc()), page, per_page)


def open_on_site(conn: Connection, property_id: int) -> Sequence[Row[*tuple[Any, ...]]]:
    """Scheduled visits at the property that have not ended yet, soonest first, as plain rows of what
    the on-site answer shows."""
    return conn.execute(_OPEN, {"property_id": property_id, "now": utcnow()}).all()


# built once, the property and the time bound at each call (the technician lookup reads it on every lookup)
_APPOINTMENTS = Appointment.__table__
_OPEN = (
    select(*(_APPOINTMENTS.c[name] for name in ("id", "type", "starts_at", "ends_at", "technician_id", "notes")))
    .where(
        _APPOINTMENTS.c.property_id == bindparam("property_id"),
        _APPOINTMENTS.c.status == "scheduled",
        _APPOINTMENTS.c.ends_at >= bindparam("now", type_=_APPOINTMENTS.c.ends_at.type),
    )
    .order_by(_APPOINTMENTS.c.starts_at, _APPOINTMENTS.c.id)
)


def customers_of(session: Session, property_ids: Iterable[int]) -> dict[int, int]:
    ids = sorted(set(property_ids))
    if not ids:
        return {}
    return dict(session.execute(select(Property.id, Property.customer_id).where(Property.id.in_(ids))).all())


def _check_times(starts_at: datetime, ends_at: datetime) -> None:
    if ends_at <= starts_at:
        raise validation_problem({"ends_at": ["Must be after starts_at."]})


def _lock_schedule(session: Session, technician_id: int) -> None:
    if session.get_bind().dialect.name == "postgresql":
        session.execute(
            text("SELECT pg_advisory_xact_lock(:namespace, :technician)"),
            {"namespace": SCHEDULING_LOCK_NAMESPACE, "technician": technician_id},
        )


def _ensure_technician_free(session: Session, appointment: Appointment) -> None:
    """409 when the (already written) appointment overlaps another live one of its technician."""
    if appointment.technician_id is None or appointment.status == "cancelled":
        return
    clash = session.scalar(
        select(Appointment.id)
        .where(
            Appointment.technician_id == appointment.technician_id,
            Appointment.id != appointment.id,
            Appointment.status != "cancelled",
            Appointment.starts_at < appointment.ends_at,
            Appointment.ends_at > appointment.starts_at,
        )
        .order_by(Appointment.starts_at)
        .limit(1)
    )
    if clash is not None:
        raise conflict(
            "The technician already has an appointment at that time.",
            errors={"starts_at": ["Overlaps another appointment of this technician."]},
            conflicting_appointment_id=clash,
        )


ensure_technician_free = _ensure_technician_free  # restoring a cancelled visit checks the same


def schedule(session: Session, prop: Property, data: dict, actor: Actor) -> Appointment:
    ensure_editable(prop)
    _check_times(data["starts_at"], data["ends_at"])
    if data.get("technician_id") is not None:
        _lock_schedule(session, data["technician_id"])
    created = Appointment(property_id=prop.id, status="scheduled", **{k: data[k] for k in EDITABLE if k in data})
    session.add(created)
    writes.flush(session)
    _ensure_technician_free(session, created)
    history.record(
        session,
        prop.id,
        "appointment_scheduled",
        actor,
        subject=f"appointment {created.id}",
        new=f"{created.type} {created.starts_at.isoformat()}",
    )
    return created


def _ensure_scheduled(appointment: Appointment) -> None:
    if appointment.status != "scheduled":
        raise conflict(
            f"The appointment is {appointment.status}; only scheduled ones can change.", state=appointment.status
        )


def reschedule(session: Session, prop: Property, appointment: Appointment, changes: dict, actor: Actor) -> list[str]:
    """Changes type, times, technician or notes of a scheduled appointment."""
    _ensure_scheduled(appointment)
    ensure_editable(prop)
    values = {key: changes[key] for key in EDITABLE if key in changes}
    _check_times(values.get("starts_at", appointment.starts_at), values.get("ends_at", appointment.ends_at))
    technician_id = values.get("technician_id", appointment.technician_id)
    if technician_id is not None:
        _lock_schedule(session, technician_id)
    changed = history.record_changes(
        session, prop.id, appointment, values, actor, subject=f"appointment {appointment.id}"
    )
    if changed:
        writes.flush(session)
        _ensure_technician_free(session, appointment)
    return changed


def cancel(session: Session, appointment: Appointment, reason: str, actor: Actor) -> Appointment:
    """Calls a scheduled visit off, keeping it with who, when and why (also on inactive properties)."""
    _ensure_scheduled(appointment)
    appointment.status = "cancelled"
    appointment.cancel_reason = reason
    appointment.cancelled_at = utcnow()
    appointment.cancelled_by = actor.name
    history.record(
        session,
        appointment.property_id,
        "appointment_cancelled",
        actor,
        subject=f"appointment {appointment.id}",
        field="status",
        old="scheduled",
        new="cancelled",
        reason=reason,
    )
    writes.flush(session)
    return appointment


def complete(session: Session, appointment: Appointment, notes: str | None, actor: Actor) -> Appointment:
    """Marks a scheduled visit done, optionally with the technician's notes."""
    _ensure_scheduled(appointment)
    appointment.status = "completed"
    appointment.completed_at = utcnow()
    if notes is not None:
        appointment.notes = notes
    history.record(
        session,
        appointment.property_id,
        "appointment_completed",
        actor,
        subject=f"appointment {appointment.id}",
        field="status",
        old="scheduled",
        new="completed",
    )
    writes.flush(session)
    return appointment
