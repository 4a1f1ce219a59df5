"""The change history of a record: who changed what, when, from where and how.

Every write in this service goes through :func:`record`, in the same transaction as the change.
Confidential values are stored as FieldCipher tokens and shown to a reader unmasked only when
they hold the confidential permission for that field.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any, cast

from sqlalchemy import Select, Table, insert, or_, select
from sqlalchemy.orm import Session

from vigil_shared.commands import source_of
from vigil_shared.crypto import FieldCipher
from vigil_shared.db import Condition, filtered
from vigil_shared.identity import Identity

from . import registry
from .access import SECTION_PERMISSIONS
from .models import HistoryEntry

SOURCES = ("api", "import", "workflow", "integration")
# Fields on a section with its own view permission (sale, installation): their changes are shown
# only to callers who may view that section of the record.
SECTIONED = frozenset(
    f.name
    for f in registry.FIELDS
    if any(section and SECTION_PERMISSIONS[section][0] for section in (f.sections.customer, f.sections.lead))
)
# confidential category: the field whose masking its history values get
_MASKED_AS = {f.confidential: f for f in registry.FIELDS if f.confidential}


@dataclass(frozen=True)
class Actor:
    """Who is making a change, and through what (``api`` for people, ``integration`` for API keys)."""

    identity: Identity
    source: str = "api"

    @classmethod
    def of(cls, identity: Identity, source: str | None = None) -> Actor:
        return cls(identity, source_of(identity) if source is None else source)

    @property
    def name(self) -> str:
        return self.identity.username


def as_text(value) -> str | None:
    """History keeps values as text: ISO dates, ``true``/``false``, numbers as written."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in sorted(value.items()))
    return str(value)


def record(
    session: Session,
    actor: Actor,
    customer_id: int,
    action: str,
    *,
    target_type: str = "customer",
    target_id: int | None = None,
    field: str | None = None,
    old=None,
    new=None,
    confidential: str | None = None,
    cipher: FieldCipher | None = None,
) -> HistoryEntry:
    old_text, new_text = as_text(old), as_text(new)
    values = {"old_value": old_text, "new_value": new_text}
    if confidential:
        assert cipher is not None, "a confidential change is recorded encrypted"
        values = {"old_value_enc": cipher.encrypt(old_text), "new_value_enc": cipher.encrypt(new_text)}
    entry = HistoryEntry(
        customer_id=customer_id,
        actor_id=actor.identity.subject,
        actor_name=actor.name,
        source=actor.source,
        client_ip=actor.identity.client_ip,
        request_id=actor.identity.request_id,
        action=action,
        target_type=target_type,
        target_id=target_id,
        field=field,
        confidential=confidential,
        **values,
    )
    session.add(entry)
    return entry


_INSERT = insert(cast(Table, HistoryEntry.__table__))  # Core: the ORM's bulk path costs more


def record_many(
    session: Session,
    actor: Actor,
    customer_id: int,
    action: str,
    changes: list[tuple[str | None, Any, Any, str | None]],
    cipher: FieldCipher,
) -> None:
    """Records ``(field, old, new, confidential)`` changes of one action as :func:`record` would, one
    row each in that order, but as one Core ``INSERT`` (a create writes about a dozen; as ORM objects
    they cost a tenth of its CPU). The record's row must be flushed already."""
    rows = rows_of(actor, customer_id, action, changes, cipher)
    if rows:
        session.execute(_INSERT, rows)


def rows_of(
    actor: Actor,
    customer_id: int,
    action: str,
    changes: list[tuple[str | None, Any, Any, str | None]],
    cipher: FieldCipher,
) -> list[dict[str, Any]]:
    """The rows :func:`record_many` writes (for a caller writing them with other rows: a create)."""
    common: dict[str, Any] = {
        "customer_id": customer_id,
        "actor_id": actor.identity.subject,
        "actor_name": actor.name,
        "source": actor.source,
        "client_ip": actor.identity.client_ip,
        "request_id": actor.identity.request_id,
        "action": action,
        "target_type": "customer",
        "target_id": None,
    }
    rows = []
    for field, old, new, confidential in changes:
        old_text, new_text = as_text(old), as_text(new)
        if confidential:  # never in plaintext at rest: FieldCipher tokens only
            values: dict[str, Any] = {
                "old_value": None,
                "new_value": None,
                "old_value_enc": cipher.encrypt(old_text),
                "new_value_enc": cipher.encrypt(new_text),
            }
        else:
            values = {"old_value": old_text, "new_value": new_text, "old_value_enc": None, "new_value_enc": None}
        rows.append({**common, "field": field, "confidential": confidential, **values})
    return rows


# The history list's filters (an empty value filters nothing); ``user`` matches the actor's id or name.
FILTERS: dict[str, Condition] = {
    "field": lambda field: HistoryEntry.field == field,
    "user": lambda user: (HistoryEntry.actor_name == user) | (HistoryEntry.actor_id == user),
    "source": lambda source: HistoryEntry.source == source,
    "action": lambda action: HistoryEntry.action == action,
    "since": lambda since: HistoryEntry.at >= since,
    "until": lambda until: HistoryEntry.at < until,
}


# The record's tabs, by the ``target_type`` of their entries, and the permission that shows each tab: a
# change to one (a note's text, a contact's name and phones, a file's name) is history only to callers
# who may see the tab itself.
TAB_PERMISSIONS = {
    "note": "notes.view",
    "ticket": "notes.view",
    "contact": "contacts.view",
    "file": "files.view",
    "tag": "tags.view",
    "property": "properties.view",
}


def hidden_fields(access) -> list[str]:
    """The record's fields on a section ``access`` may not view (sale, installation): their changes are
    left out of its history."""
    return sorted(name for name in SECTIONED if not access.can_view_field(name))


def hidden_tabs(access) -> list[str]:
    """The ``target_type`` of the entries of tabs ``access`` may not view (:data:`TAB_PERMISSIONS`)."""
    return sorted(target for target, permission in TAB_PERMISSIONS.items() if not access.can(permission))


def query(customer_id: int, access, **filters: str | datetime | None) -> Select:
    """Newest first, narrowed by :data:`FILTERS`, without the changes to :func:`hidden_fields` and
    :func:`hidden_tabs`: left out by the query itself, so the page's ``total`` does not count them (a
    count of a hidden field's changes, narrowed by ``field`` and a time range, would tell how often and
    when it changed)."""
    statement = select(HistoryEntry).where(HistoryEntry.customer_id == customer_id)
    hidden = hidden_fields(access)
    if hidden:
        statement = statement.where(
            or_(
                HistoryEntry.target_type != "customer",
                HistoryEntry.field.is_(None),
                HistoryEntry.field.not_in(hidden),
            )
        )
    tabs = hidden_tabs(access)
    if tabs:
        statement = statement.where(HistoryEntry.target_type.not_in(tabs))
    return filtered(statement, FILTERS, filters, given=bool).order_by(HistoryEntry.at.desc(), HistoryEntry.id.desc())


def present(entries: list[HistoryEntry], access, cipher: FieldCipher) -> tuple[list[dict], list[str]]:
    """Entries (of :func:`query` with the same ``access``) as the caller may see them, and the confidential
    fields shown unmasked: confidential values are masked unless the caller holds that field's
    confidential view permission.
    """
    shown: set[str] = set()
    items = []
    for entry in entries:
        old, new = entry.old_value, entry.new_value
        if entry.confidential:
            old, new = cipher.decrypt(entry.old_value_enc), cipher.decrypt(entry.new_value_enc)
            if access.can(f"confidential.{entry.confidential}.view"):
                if entry.field is not None and (old is not None or new is not None):
                    shown.add(entry.field)
            else:
                hide = _MASKED_AS[entry.confidential].masked
                old, new = hide(old), hide(new)
        items.append(
            {
                "id": entry.id,
                "at": entry.at,
                "actor_id": entry.actor_id,
                "actor_name": entry.actor_name,
                "source": entry.source,
                "client_ip": entry.client_ip,
                "request_id": entry.request_id,
                "action": entry.action,
                "target_type": entry.target_type,
                "target_id": entry.target_id,
                "field": entry.field,
                "old_value": old,
                "new_value": new,
                "confidential": entry.confidential is not None,
            }
        )
    return items, sorted(shown)
