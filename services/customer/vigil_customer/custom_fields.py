"""Admin-defined fields: definitions, and validation of the values a record holds.

A definition has a stable ``key`` and a ``type`` that never change once created (stored values
depend on them); its label, options, required flag, kinds and position may change.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from vigil_shared.errors import conflict, get_or_404, validation_problem

from .models import CustomFieldDefinition

TYPES = ("text", "number", "date", "select", "checkbox")
APPLIES_TO = ("customer", "lead", "both")
TEXT_MAX = 1000


def definitions(session: Session, kind: str | None = None, *, active_only: bool = True) -> list[CustomFieldDefinition]:
    statement = select(CustomFieldDefinition).order_by(CustomFieldDefinition.position, CustomFieldDefinition.id)
    if active_only:
        statement = statement.where(CustomFieldDefinition.active.is_(True))
    rows = session.scalars(statement).all()
    return [d for d in rows if kind is None or d.applies_to in (kind, "both")]


_ACTIVE = "vigil_customer.active_custom_fields"  # session.info key: the active definitions, as rows
_DEFINITIONS = CustomFieldDefinition.__table__.c
# Built once, of the table's columns (a Core statement: no ORM compile step); the rows are the same.
_ACTIVE_ROWS = (
    select(_DEFINITIONS.key, _DEFINITIONS.type, _DEFINITIONS.options, _DEFINITIONS.required, _DEFINITIONS.applies_to)
    .where(_DEFINITIONS.active.is_(True))
    .order_by(_DEFINITIONS.position, _DEFINITIONS.id)
)


def _active(session: Session, kind: str) -> list[Any]:
    """The active definitions for ``kind`` (rows of key, type, options, required, applies_to), in order.

    Read once per session (a request's session lives for that request): a create validates the
    new record's custom values and then shows them, and read them twice. The writes below forget them.
    """
    rows = session.info.get(_ACTIVE)
    if rows is None:
        rows = session.info[_ACTIVE] = session.execute(_ACTIVE_ROWS).all()
    return [d for d in rows if d.applies_to in (kind, "both")]


def _forget(session: Session) -> None:
    session.info.pop(_ACTIVE, None)


def get_definition(session: Session, definition_id: int) -> CustomFieldDefinition:
    return get_or_404(session, CustomFieldDefinition, definition_id, "custom field")


def _check_options(field_type: str, options: list[str] | None) -> list[str]:
    options = [o.strip() for o in options or [] if o and o.strip()]
    if field_type == "select":
        if not options:
            raise validation_problem({"options": ["A select field needs at least one option."]})
        if len({o.lower() for o in options}) != len(options):
            raise validation_problem({"options": ["Options must be distinct."]})
    elif options:
        raise validation_problem({"options": ["Only select fields have options."]})
    return options


def create_definition(session: Session, data: dict) -> CustomFieldDefinition:
    data = dict(data)
    data["options"] = _check_options(data["type"], data.get("options"))
    definition = CustomFieldDefinition(**data)
    _forget(session)
    session.add(definition)
    try:
        session.flush()
    except IntegrityError:
        raise conflict("A custom field with this key exists.", errors={"key": ["Already in use."]}) from None
    return definition


def update_definition(session: Session, definition: CustomFieldDefinition, changes: dict) -> CustomFieldDefinition:
    if "options" in changes:
        changes = dict(changes, options=_check_options(definition.type, changes["options"]))
        removed = {o for o in definition.options or []} - set(changes["options"])
        if removed:
            _ensure_options_unused(session, definition.key, removed)
    _forget(session)
    for key, value in changes.items():
        setattr(definition, key, value)
    session.flush()
    return definition


def _ensure_options_unused(session: Session, key: str, removed: set[str]) -> None:
    from .models import Customer

    # JSON access differs per database; stored values are read back and checked here instead.
    for values in session.scalars(select(Customer.custom_fields).where(Customer.custom_fields.isnot(None))):
        if values and values.get(key) in removed:
            raise conflict(
                "Some records still use an option you removed; change them first.",
                errors={"options": [f"In use: {values.get(key)}"]},
            )


def delete_definition(session: Session, definition: CustomFieldDefinition) -> None:
    """Removes the definition; values already stored stop being shown or validated."""
    _forget(session)
    session.delete(definition)
    session.flush()


def _coerce(definition: Any, value: Any) -> Any:
    """``definition``: a definition, or a row with its type and options."""
    if value is None or value == "":
        return None
    if definition.type == "text":
        if not isinstance(value, str):
            raise ValueError("Must be text.")
        if len(value) > TEXT_MAX:
            raise ValueError(f"At most {TEXT_MAX} characters.")
        return value.strip() or None
    if definition.type == "number":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("Must be a number.")
        if value != value or value in (float("inf"), float("-inf")):
            raise ValueError("Must be a finite number.")
        return value
    if definition.type == "date":
        if not isinstance(value, str):
            raise ValueError("Must be a date (YYYY-MM-DD).")
        try:
            return date.fromisoformat(value).isoformat()
        except ValueError:
            raise ValueError("Must be a date (YYYY-MM-DD).") from None
    if definition.type == "select":
        if value not in (definition.options or []):
            raise ValueError("Must be one of: " + ", ".join(definition.options or []) + ".")
        return value
    if definition.type == "checkbox":
        if not isinstance(value, bool):
            raise ValueError("Must be true or false.")
        return value
    raise ValueError("Unknown field type.")


def validate_values(
    session: Session, kind: str, incoming: dict, stored: dict | None, *, creating: bool
) -> tuple[dict, dict[str, list[str]]]:
    """Merges ``incoming`` into ``stored`` under the definitions for ``kind``; returns (values, errors).

    Unknown keys are refused; a required field must have a value when the record is created
    (or converted) and can never be cleared afterwards.
    """
    defined = {d.key: d for d in _active(session, kind)}
    merged = {k: v for k, v in (stored or {}).items() if k in defined}
    errors: dict[str, list[str]] = {}
    for key, value in (incoming or {}).items():
        definition = defined.get(key)
        if definition is None:
            errors[f"custom_fields.{key}"] = ["No such custom field for this kind of record."]
            continue
        try:
            coerced = _coerce(definition, value)
        except ValueError as exc:
            errors[f"custom_fields.{key}"] = [str(exc)]
            continue
        if coerced is None:
            merged.pop(key, None)
        else:
            merged[key] = coerced
    for key, definition in defined.items():
        if definition.required and merged.get(key) is None and (creating or key in (incoming or {})):
            errors.setdefault(f"custom_fields.{key}", []).append("Required.")
    return merged, errors


def visible_values(session: Session, kind: str, stored: dict | None) -> dict:
    defined = {d.key for d in _active(session, kind)}
    return {k: v for k, v in (stored or {}).items() if k in defined}
