"""Notes and tickets of a record, urgent ones first.

A ticket is a note with an assignee, a due date, a priority and a status. Urgent notes come first
in every list. A note counts as open; a
ticket is open until it is closed — that is the tab's count.
"""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from vigil_shared.db import Condition, added, filtered
from vigil_shared.errors import get_or_404, validation_problem

from . import history
from .customers import touch
from .models import Note

TICKET_FIELDS = ("assignee", "due_date", "priority", "status")
PRIORITIES = ("low", "normal", "high", "urgent")
STATUSES = ("open", "in_progress", "closed")
EDITABLE = ("text", "urgent", *TICKET_FIELDS)


def _check_kind(kind: str, data: dict) -> None:
    if kind == "note":
        stray = [name for name in TICKET_FIELDS if data.get(name) is not None]
        if stray:
            raise validation_problem({name: ["Only tickets have this field."] for name in stray})


def create_note(session: Session, actor: history.Actor, customer_id: int, data: dict) -> Note:
    kind = data.get("kind", "note")
    _check_kind(kind, data)
    note = Note(
        customer_id=customer_id, kind=kind, text=data["text"], urgent=data.get("urgent", False), created_by=actor.name
    )
    if kind == "ticket":
        note.assignee = data.get("assignee")
        note.due_date = data.get("due_date")
        note.priority = data.get("priority") or "normal"
        note.status = data.get("status") or "open"
    added(session, note)
    history.record(
        session, actor, customer_id, f"{kind}_add", target_type=kind, target_id=note.id, field="text", new=note.text
    )
    touch(session, customer_id)
    return note


def get_note(session: Session, customer_id: int, note_id: int) -> Note:
    return get_or_404(session, Note, note_id, "note", customer_id=customer_id)


def update_note(session: Session, actor: history.Actor, note: Note, changes: dict) -> list[str]:
    _check_kind(note.kind, changes)
    if note.kind == "ticket":
        for name in ("priority", "status"):
            if name in changes and changes[name] is None:
                raise validation_problem({name: ["A ticket always has one."]})
    changed = []
    for name in EDITABLE:
        if name in changes and getattr(note, name) != changes[name]:
            history.record(
                session,
                actor,
                note.customer_id,
                f"{note.kind}_update",
                target_type=note.kind,
                target_id=note.id,
                field=name,
                old=getattr(note, name),
                new=changes[name],
            )
            setattr(note, name, changes[name])
            changed.append(name)
    if changed:
        session.flush()
        touch(session, note.customer_id)
    return changed


def delete_note(session: Session, actor: history.Actor, note: Note) -> None:
    history.record(
        session,
        actor,
        note.customer_id,
        f"{note.kind}_delete",
        target_type=note.kind,
        target_id=note.id,
        field="text",
        old=note.text,
    )
    session.delete(note)
    session.flush()
    touch(session, note.customer_id)


# The notes list's filters (an empty value filters nothing); ``open_only`` is applied on its own.
FILTERS: dict[str, Condition] = {
    "kind": lambda kind: Note.kind == kind,
    "status": lambda status: Note.status == status,
    "assignee": lambda assignee: Note.assignee == assignee,
}


def list_statement(customer_id: int, *, open_only: bool | None = None, **filters: str | None):
    statement = filtered(select(Note).where(Note.customer_id == customer_id), FILTERS, filters, given=bool)
    if open_only is True:
        statement = statement.where(or_(Note.kind == "note", Note.status != "closed"))
    elif open_only is False:
        statement = statement.where(Note.kind == "ticket", Note.status == "closed")
    return statement.order_by(Note.urgent.desc(), Note.created_at.desc(), Note.id.desc())
