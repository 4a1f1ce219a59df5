"""System kinds (an admin catalog) and the systems installed at properties, with their login details.

A kind says which fields a system of that kind asks for. A field is either one of the system's own
columns (``ip_address``, ``port``, ``username``, ``password``, ``version``) or a custom one kept in
the system's ``details``; ``required`` fields must be filled when the system is assigned and cannot
be emptied later. The password is only ever stored encrypted.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, func, select
from sqlalchemy.orm import Session

from vigil_shared.crypto import FieldCipher
from vigil_shared.errors import Problem, conflict, get_or_404, validation_problem
from vigil_shared.http import Page, paginate
from vigil_shared.masking import MASK

from . import history, writes
from .history import Actor
from .models import Property, System, SystemKind
from .properties import ensure_editable

BUILT_IN_FIELDS = ("ip_address", "port", "username", "password", "version")
PLAIN_COLUMNS = ("ip_address", "port", "username", "version", "notes")


def _name_taken() -> Problem:
    return conflict("Another system kind already has this name.", errors={"name": ["Already in use."]})


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


# --- kinds ---------------------------------------------------------------------------------------


def list_kinds(session: Session, *, page: int, per_page: int, q: str | None = None) -> Page:
    statement = select(SystemKind)
    if q:
        pattern = f"%{q.lower()}%"
        statement = statement.where(
            func.lower(SystemKind.name).like(pattern) | func.lower(SystemKind.manufacturer).like(pattern)
        )
    return paginate(session, statement.order_by(SystemKind.name.asc(), SystemKind.id.asc()), page, per_page)


def get_kind(session: Session, kind_id: int) -> SystemKind:
    return get_or_404(session, SystemKind, kind_id, "system kind")


def _ensure_name_free(session: Session, name: str, exclude_id: int | None = None) -> None:
    statement = select(SystemKind.id).where(func.lower(SystemKind.name) == name.lower())
    if exclude_id is not None:
        statement = statement.where(SystemKind.id != exclude_id)
    if session.scalar(statement) is not None:
        raise _name_taken()


def create_kind(session: Session, data: dict) -> SystemKind:
    _ensure_name_free(session, data["name"])
    kind = SystemKind(**{"fields": []} | data)
    session.add(kind)
    writes.flush(session, _name_taken)
    return kind


def update_kind(session: Session, kind: SystemKind, changes: dict) -> SystemKind:
    if "name" in changes and changes["name"] != kind.name:
        _ensure_name_free(session, changes["name"], exclude_id=kind.id)
    for name, value in changes.items():
        if getattr(kind, name) != value:
            setattr(kind, name, value)
    writes.flush(session, _name_taken)
    return kind


def delete_kind(session: Session, kind: SystemKind) -> None:
    """A kind some property still uses cannot go (409): remove those systems first.

    The answer counts nothing: the systems are in every office, and the catalog's manager
    (``catalogs.manage``, company-wide) may work in some of them only, so no number of them may reach it."""
    if session.scalar(select(System.id).where(System.kind_id == kind.id).limit(1)) is not None:
        raise conflict("Systems at properties are of this kind. Remove them first.")
    session.delete(kind)
    writes.flush(session, lambda: conflict("Systems of this kind were added meanwhile. Remove them first."))


# --- systems at a property -----------------------------------------------------------------------


def list_systems(session: Session, property_id: int, *, page: int, per_page: int) -> Page:
    statement = select(System).where(System.property_id == property_id).order_by(System.id.asc())
    return paginate(session, statement, page, per_page)


def on_site(conn: Connection, property_id: int) -> Sequence[Row[*tuple[Any, ...]]]:
    """The property's systems with their kinds' names, as plain rows of what the on-site answer shows
    (the password still encrypted), in one query."""
    return conn.execute(_ON_SITE, {"property_id": property_id}).all()


# built once, the property bound at each call (the technician lookup reads it on every lookup)
_SYSTEMS = System.__table__
_ON_SITE = (
    select(
        *(
            _SYSTEMS.c[name]
            for name in ("id", "kind_id", "ip_address", "port", "username", "password_encrypted", "version", "notes")
        ),
        SystemKind.__table__.c.name.label("kind_name"),
        _SYSTEMS.c.details,
    )
    .select_from(_SYSTEMS.join(SystemKind.__table__, SystemKind.__table__.c.id == _SYSTEMS.c.kind_id))
    .where(_SYSTEMS.c.property_id == bindparam("property_id"))
    .order_by(_SYSTEMS.c.id)
)


def kinds_by_id(session: Session, kind_ids) -> dict[int, SystemKind]:
    ids = sorted(set(kind_ids))
    if not ids:
        return {}
    return {kind.id: kind for kind in session.scalars(select(SystemKind).where(SystemKind.id.in_(ids)))}


def get_system(session: Session, property_id: int, system_id: int) -> System:
    return get_or_404(session, System, system_id, "system", property_id=property_id)


def _custom_names(kind: SystemKind) -> set[str]:
    return {spec["name"] for spec in kind.fields if spec["name"] not in BUILT_IN_FIELDS}


def _check_against_kind(
    kind: SystemKind,
    values: dict,
    password_set: bool,
    details: dict,
    *,
    new_details: dict,
    touched: set[str] | None = None,
) -> None:
    """422 naming each required field left empty and each new detail the kind does not ask for.

    ``touched`` limits the required-field check to the fields a change names (None: all, on
    assignment), so a field a kind starts asking for later does not block unrelated edits.
    """
    errors: dict[str, list[str]] = {}
    for key in sorted(set(new_details) - _custom_names(kind)):
        errors[f"details.{key}"] = [f"Not a field of the system kind '{kind.name}'."]
    for spec in kind.fields:
        name = spec["name"]
        api_name = name if name in BUILT_IN_FIELDS else f"details.{name}"
        if not spec.get("required") or (touched is not None and api_name not in touched):
            continue
        if name == "password":
            missing = not password_set
        elif name in BUILT_IN_FIELDS:
            missing = _empty(values.get(name))
        else:
            missing = _empty(details.get(name))
        if missing:
            errors[api_name] = [f"Required by the system kind '{kind.name}'."]
    if errors:
        raise validation_problem(errors)


def _kind_for(session: Session, kind_id: int) -> SystemKind:
    kind = session.get(SystemKind, kind_id)
    if kind is None:
        raise validation_problem({"kind_id": ["No such system kind."]})
    return kind


MASKED_PASSWORD = "Send the full value; a masked value cannot be saved."


def without_masked_echo(system: System, changes: dict) -> dict:
    """``changes`` without a password that is the mask a caller was shown (``***``): sending the system
    back as read changes nothing (it was saved as the password, and the panel's real one was lost). A
    mask where no password is stored is refused (422), as on a new system."""
    if changes.get("password") != MASK:
        return changes
    if system.password_encrypted is None:
        raise validation_problem({"password": [MASKED_PASSWORD]})
    return {name: value for name, value in changes.items() if name != "password"}


def add_system(session: Session, cipher: FieldCipher, prop: Property, data: dict, actor: Actor) -> System:
    ensure_editable(prop)
    if data.get("password") == MASK:
        raise validation_problem({"password": [MASKED_PASSWORD]})
    kind = _kind_for(session, data["kind_id"])
    values = {name: data.get(name) for name in PLAIN_COLUMNS}
    details = data.get("details") or {}
    password = data.get("password")
    _check_against_kind(kind, values, password is not None, details, new_details=details)
    system = System(
        property_id=prop.id, kind_id=kind.id, details=details, password_encrypted=cipher.encrypt(password), **values
    )
    session.add(system)
    writes.flush(session)
    history.record(session, prop.id, "system_added", actor, subject=f"system {system.id}", new=kind.name)
    return system


def update_system(
    session: Session,
    cipher: FieldCipher,
    prop: Property,
    system: System,
    changes: dict,
    actor: Actor,
    *,
    sees_password: bool = True,
) -> list[str]:
    """Applies ``changes``; ``details`` changes only the keys it names (null removes one).

    ``sees_password``: whether the caller sees the password unmasked. One who does not has a stored
    password they send written whatever it is: were the same one "no change", the answer (the same
    ETag, no history entry) would confirm a guess of it."""
    ensure_editable(prop)
    kind = session.get(SystemKind, system.kind_id)
    assert kind is not None, "a system's kind is a foreign key"
    subject = f"system {system.id}"
    values = {name: changes[name] for name in PLAIN_COLUMNS if name in changes}
    details = dict(system.details or {})
    for key, value in (changes.get("details") or {}).items():
        if value is None:
            details.pop(key, None)
        else:
            details[key] = value
    password_changes = "password" in changes
    password_set = changes["password"] is not None if password_changes else system.password_encrypted is not None
    given_details = {key: value for key, value in (changes.get("details") or {}).items() if value is not None}
    touched = (
        set(values)
        | {f"details.{key}" for key in changes.get("details") or {}}
        | ({"password"} if password_changes else set())
    )
    _check_against_kind(
        kind,
        {name: values.get(name, getattr(system, name)) for name in PLAIN_COLUMNS},
        password_set,
        details,
        new_details=given_details,
        touched=touched,
    )
    changed = history.record_changes(session, prop.id, system, values, actor, subject=subject)
    if details != (system.details or {}):
        for key in sorted(set(details) | set(system.details or {})):
            old, new = (system.details or {}).get(key), details.get(key)
            if old != new:
                history.record(
                    session, prop.id, "updated", actor, subject=subject, field=f"details.{key}", old=old, new=new
                )
                changed.append(f"details.{key}")
        system.details = details
    if password_changes and (
        _password_of(cipher, system) != changes["password"]
        or (not sees_password and system.password_encrypted is not None)
    ):
        history.record(
            session,
            prop.id,
            "updated",
            actor,
            subject=subject,
            field="password",
            old=system.password_encrypted,
            new=changes["password"],
        )
        system.password_encrypted = cipher.encrypt(changes["password"])
        changed.append("password")
    if changed:
        writes.flush(session)
    return sorted(changed)


def _password_of(cipher: FieldCipher, system: System) -> str | None:
    return cipher.decrypt(system.password_encrypted)


def remove_system(session: Session, prop: Property, system: System, actor: Actor) -> None:
    ensure_editable(prop)
    kind = session.get(SystemKind, system.kind_id)
    history.record(
        session, prop.id, "system_removed", actor, subject=f"system {system.id}", old=kind.name if kind else None
    )
    session.delete(system)
    writes.flush(session)
