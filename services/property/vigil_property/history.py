"""The change history of a property: who changed which field, when, through which channel.

Entries belong to the property, so they move with it when it is transferred to another customer.
Confidential values (the PIN) are written as ``***``: the history never holds them in clear.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.commands import source_of
from vigil_shared.http import Page, paginate
from vigil_shared.identity import Identity
from vigil_shared.masking import MASK

from .models import PropertyHistory

CONFIDENTIAL_FIELDS = frozenset({"pin", "password"})


@dataclass(frozen=True)
class Actor:
    """Who is making a change, as the history and the events record it."""

    id: str | None
    name: str | None
    source: str = "api"
    request_id: str | None = None

    @classmethod
    def of(cls, identity: Identity, request_id: str | None = None) -> Actor:
        return cls(
            id=identity.subject,
            name=identity.username,
            source=source_of(identity),
            request_id=request_id or identity.request_id,
        )


SYSTEM = Actor(id=None, name="system", source="workflow")


def _text(value) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


def record(
    session: Session,
    property_id: int,
    action: str,
    actor: Actor,
    *,
    field: str | None = None,
    old=None,
    new=None,
    reason: str | None = None,
    subject: str | None = None,
) -> None:
    """One history entry; ``subject`` names a system or equipment of the property ("system 3")."""
    if field in CONFIDENTIAL_FIELDS:
        old, new = (None if old is None else MASK), (None if new is None else MASK)
    session.add(
        PropertyHistory(
            property_id=property_id,
            action=action,
            subject=subject,
            field=field,
            old_value=_text(old),
            new_value=_text(new),
            reason=reason,
            actor_id=actor.id,
            actor_name=actor.name,
            source=actor.source,
            request_id=actor.request_id,
        )
    )


def record_changes(
    session: Session,
    property_id: int,
    record_: object,
    values: dict,
    actor: Actor,
    *,
    action: str = "updated",
    subject: str | None = None,
) -> list[str]:
    """Sets the attributes of ``record_`` that ``values`` changes, one history entry each; returns their names."""
    changed = sorted(name for name, value in values.items() if getattr(record_, name) != value)
    for name in changed:
        record(
            session,
            property_id,
            action,
            actor,
            subject=subject,
            field=name,
            old=getattr(record_, name),
            new=values[name],
        )
        setattr(record_, name, values[name])
    return changed


def list_history(session: Session, property_id: int, *, page: int, per_page: int) -> Page:
    statement = (
        select(PropertyHistory)
        .where(PropertyHistory.property_id == property_id)
        .order_by(PropertyHistory.at.desc(), PropertyHistory.id.desc())
    )
    return paginate(session, statement, page, per_page)
