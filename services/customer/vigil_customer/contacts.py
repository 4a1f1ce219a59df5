"""Contacts of a record: emergency contacts in call order, others, a primary.

Emergency contacts are called in ``call_priority`` order, always a clean 1..N: placing a contact
at a priority moves the others around it (up or down) so that no number is skipped or repeated.
The passcode a contact gives the central station is confidential: encrypted at rest and masked
like the installation codes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, case, func, select, true, update
from sqlalchemy.orm import Session

from vigil_shared.crypto import FieldCipher
from vigil_shared.db import added
from vigil_shared.errors import get_or_404, not_found, validation_problem
from vigil_shared.identity import Identity
from vigil_shared.masking import MASK, mask

from . import history, validation
from .access import field_forbidden
from .customers import touch
from .models import Contact, Customer

EMERGENCY, OTHER = "emergency", "other"
EMERGENCY_ONLY = ("relation", "has_key", "call_priority", "passcode")
OTHER_ONLY = ("role",)
EDITABLE = ("name", "relation", "role", "phones", "email", "has_key", "call_priority", "passcode", "is_primary")
PASSCODE_VIEW = "confidential.installation_codes.view"
PASSCODE_MODIFY = "confidential.installation_codes.modify"


def _check_type(contact_type: str, data: dict) -> None:
    wrong = EMERGENCY_ONLY if contact_type == OTHER else OTHER_ONLY
    stray = [name for name in wrong if data.get(name) not in (None, False)]
    if stray:
        other = "emergency" if contact_type == OTHER else "other"
        raise validation_problem({name: [f"Only {other} contacts have this field."] for name in stray})


def _phones(phones: list[dict] | None, state: str | None) -> list[dict]:
    result, errors = [], {}
    for index, phone in enumerate(phones or []):
        try:
            display, e164 = validation.parse_phone(phone["number"], state)
        except ValueError as exc:
            errors[f"phones.{index}.number"] = [str(exc)]
            continue
        result.append({"label": phone.get("label") or "phone", "number": display, "e164": e164})
    if errors:
        raise validation_problem(errors)
    return result


def _place(session: Session, contact: Contact, wanted: int | None) -> None:
    """Puts an emergency contact at ``wanted`` (1 = called first; None or beyond the end = last)
    and renumbers the call list 1..N, so moving up, down, to the end or nowhere leaves no gap
    and no repeat (and a list left with gaps by older versions is healed on the next move)."""
    others = list(
        session.scalars(
            select(Contact)
            .where(
                Contact.customer_id == contact.customer_id,
                Contact.type == EMERGENCY,
                Contact.id != contact.id if contact.id is not None else true(),
            )
            .order_by(Contact.call_priority.is_(None), Contact.call_priority, Contact.id)
        )
    )
    slot = len(others) if wanted is None else min(max(wanted, 1), len(others) + 1) - 1
    ordered = [*others[:slot], contact, *others[slot:]]
    for position, member in enumerate(ordered, start=1):
        if member.call_priority != position:
            member.call_priority = position


def _make_primary(session: Session, contact: Contact) -> None:
    session.execute(
        update(Contact)
        .where(Contact.customer_id == contact.customer_id, Contact.id != contact.id, Contact.is_primary.is_(True))
        .values(is_primary=False, version=Contact.version + 1)
        .execution_options(synchronize_session=False)
    )


def create_contact(
    session: Session, actor: history.Actor, cipher: FieldCipher, customer: Customer, data: dict
) -> Contact:
    contact_type = data["type"]
    _check_type(contact_type, data)
    if data.get("passcode") == MASK:  # what a caller is shown of one (a contact copied from a read)
        raise validation_problem({"passcode": ["Send the full value; a masked value cannot be saved."]})
    contact = Contact(
        customer_id=customer.id,
        type=contact_type,
        name=data["name"],
        relation=data.get("relation"),
        role=data.get("role"),
        phones=_phones(data.get("phones"), customer.state),
        email=data.get("email"),
        has_key=bool(data.get("has_key")),
        passcode_enc=cipher.encrypt(data.get("passcode") or None),
        is_primary=bool(data.get("is_primary")),
    )
    added(session, contact)
    if contact_type == EMERGENCY:
        _place(session, contact, data.get("call_priority"))
    if contact.is_primary:
        _make_primary(session, contact)
    session.flush()
    _record(session, actor, contact, "contact_add", "name", new=contact.name)
    touch(session, customer.id)
    return contact


def get_contact(session: Session, customer_id: int, contact_id: int) -> Contact:
    return get_or_404(session, Contact, contact_id, "contact", customer_id=customer_id)


def update_contact(
    session: Session,
    actor: history.Actor,
    cipher: FieldCipher,
    identity: Identity,
    customer: Customer,
    contact: Contact,
    changes: dict,
) -> list[str]:
    _check_type(contact.type, changes)
    changes = dict(changes)
    if "passcode" in changes:
        saved = cipher.decrypt(contact.passcode_enc)
        wanted = changes["passcode"] or None
        sees = identity.can(PASSCODE_VIEW, customer.location_id)
        if (wanted == saved and (sees or saved is None)) or (saved is not None and wanted == MASK):
            # unchanged, or the mask the caller was shown; a value they cannot see is "unchanged" only to
            # those who see it, or else the answer (200 for the right one, 403 otherwise) would let anyone
            # guess it without limit
            del changes["passcode"]
        elif wanted == MASK:
            raise validation_problem({"passcode": ["Send the full value; a masked value cannot be saved."]})
        elif saved is not None and not identity.can(PASSCODE_MODIFY, customer.location_id):
            raise field_forbidden({"passcode": PASSCODE_MODIFY})
    if "phones" in changes:
        changes["phones"] = _phones(changes["phones"], customer.state)
    changed = []

    def note(name: str, old, new, **confidential) -> None:
        """One history entry for a changed field of the contact."""
        _record(session, actor, contact, "contact_update", name, old=old, new=new, **confidential)
        changed.append(name)

    for name in EDITABLE:
        if name not in changes:
            continue
        if name == "passcode":
            note(
                name,
                cipher.decrypt(contact.passcode_enc),
                changes[name] or None,
                confidential="installation_codes",
                cipher=cipher,
            )
            contact.passcode_enc = cipher.encrypt(changes[name] or None)
            continue
        if name == "call_priority":
            if contact.type == EMERGENCY and changes[name] is not None and changes[name] != contact.call_priority:
                old = contact.call_priority
                _place(session, contact, changes[name])
                note(name, old, contact.call_priority)
            continue
        old = getattr(contact, name)
        if old != changes[name]:
            shown = _phones_text if name == "phones" else (lambda value: value)
            note(name, shown(old), shown(changes[name]))
            setattr(contact, name, changes[name])
    if "is_primary" in changed and contact.is_primary:
        _make_primary(session, contact)
    if changed:
        session.flush()
        touch(session, customer.id)
    return changed


def _phones_text(phones: list[dict] | None) -> str | None:
    return ", ".join(p["number"] for p in phones or []) or None


def _record(session: Session, actor: history.Actor, contact: Contact, action: str, field: str, **change) -> None:
    """A history entry of the contact's customer about ``field`` of the contact."""
    history.record(
        session, actor, contact.customer_id, action, target_type="contact", target_id=contact.id, field=field, **change
    )


def delete_contact(session: Session, actor: history.Actor, contact: Contact) -> None:
    _record(session, actor, contact, "contact_delete", "name", old=contact.name)
    customer_id, emergency = contact.customer_id, contact.type == EMERGENCY
    session.delete(contact)
    session.flush()
    if emergency:  # the ones after it move up one place
        remaining = session.scalars(
            select(Contact)
            .where(Contact.customer_id == customer_id, Contact.type == EMERGENCY)
            .order_by(Contact.call_priority.is_(None), Contact.call_priority, Contact.id)
        )
        for position, member in enumerate(remaining, start=1):
            if member.call_priority != position:
                member.call_priority = position
        session.flush()
    touch(session, customer_id)


def list_statement(customer_id: int, contact_type: str | None = None):
    """Emergency contacts first, in call order; then the others by name."""
    statement = select(Contact).where(Contact.customer_id == customer_id)
    if contact_type:
        statement = statement.where(Contact.type == contact_type)
    return statement.order_by(
        case((Contact.type == EMERGENCY, 0), else_=1), Contact.call_priority, func.lower(Contact.name), Contact.id
    )


# What the technician lookup shows of an emergency contact (the gateway's on-site answer): no passcode.
ON_SITE = (
    Contact.id,
    Contact.name,
    Contact.relation,
    Contact.role,
    Contact.phones,
    Contact.email,
    Contact.has_key,
    Contact.call_priority,
    Contact.is_primary,
)
ON_SITE_LIMIT = 100
# built once (composing it cost about a tenth of the request), the record's id bound at each call
_ON_SITE = (
    select(Customer.location_id.label("record_location_id"), *ON_SITE)
    .select_from(Customer)
    .outerjoin(Contact, (Contact.customer_id == Customer.id) & (Contact.type == EMERGENCY))
    .where(Customer.id == bindparam("customer_id"))
    .order_by(Contact.call_priority, func.lower(Contact.name), Contact.id)
    .limit(ON_SITE_LIMIT)
)


def on_site(session: Session | Connection, customer_id: int) -> tuple[int | None, list[dict[str, Any]]]:
    """The record's location and its emergency contacts in call order, as the on-site answer shows
    them, in one query (404 for an unknown record).

    The same contacts, in the same order, as ``GET …/contacts?type=emergency&per_page=100`` lists
    (its record read, count and passcode decryption are what the lookup does not need).
    """
    rows = session.execute(_ON_SITE, {"customer_id": customer_id}).all()
    if not rows:
        raise not_found("customer")
    listed = [
        {
            "id": row.id,
            "name": row.name,
            "relation": row.relation,
            "role": row.role,
            "phones": [{"label": p["label"], "number": p["number"]} for p in row.phones or []],
            "email": row.email,
            "has_key": row.has_key,
            "call_priority": row.call_priority,
            "is_primary": row.is_primary,
        }
        for row in rows
        if row.id is not None
    ]
    return rows[0].record_location_id, listed


def present(contact: Contact, identity: Identity, location_id: int | None, cipher: FieldCipher) -> tuple[dict, bool]:
    """The contact as the caller may see it, and whether a passcode was shown unmasked."""
    passcode = cipher.decrypt(contact.passcode_enc)
    shown = passcode is not None and identity.can(PASSCODE_VIEW, location_id)
    body: dict[str, Any] = {
        "id": contact.id,
        "customer_id": contact.customer_id,
        "type": contact.type,
        "name": contact.name,
        "relation": contact.relation,
        "role": contact.role,
        "phones": [{"label": p["label"], "number": p["number"]} for p in contact.phones or []],
        "email": contact.email,
        "has_key": contact.has_key,
        "call_priority": contact.call_priority,
        "passcode": passcode if shown else mask(passcode),
        "is_primary": contact.is_primary,
        "created_at": contact.created_at,
        "updated_at": contact.updated_at,
    }
    return body, shown
