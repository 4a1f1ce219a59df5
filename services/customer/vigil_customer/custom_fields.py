"""Admin-defined fields: definitions, and validation of the values a record holds.

A definition has a stable ``key`` and a ``type`` that never change once created (stored values
depend on them); its label, options, required flag, kinds and position may change.
"""

from __future__ import annotations

import json
from datetime import date
from functools import cache
from typing import Any, NamedTuple

from sqlalchemy import ColumnElement, Select, String, literal_column, select
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
_ASSUMED = "vigil_customer.assumed_custom_fields"  # session.info key: the text they were assumed from


class Definition(NamedTuple):
    """What validating and showing a value needs of an active definition."""

    key: str
    type: str
    options: list[str] | None
    required: bool
    applies_to: str


# The active definitions as one JSON text, in order: read as the definitions themselves, and compared
# with a process's last read to know they are still the same (``assume_known``/``confirm``).
_COLUMNS_JSON = 'd."key", d.type, {options}, d.required, d.applies_to'
_ACTIVE_JSON = {
    "postgresql": f"(SELECT coalesce(json_agg(json_build_array({_COLUMNS_JSON.format(options='d.options')})"
    " ORDER BY d.position, d.id), '[]')::text FROM custom_fields d WHERE d.active)",
    "sqlite": f"(SELECT coalesce(json_group_array(json_array({_COLUMNS_JSON.format(options='json(d.options)')})), '[]')"
    " FROM (SELECT * FROM custom_fields WHERE active ORDER BY position, id) d)",
}
# Per database (its URL): the text of the active definitions last read in this process, and their rows.
_KNOWN: dict[str, tuple[str, tuple[Definition, ...]]] = {}


def active_text(dialect_name: str) -> ColumnElement[str]:
    """A scalar expression of the active definitions' JSON text (``_ACTIVE_JSON``)."""
    return literal_column(_ACTIVE_JSON[dialect_name], String())


@cache
def _read_statement(dialect_name: str) -> Select:
    return select(active_text(dialect_name))


def _parse(text: str) -> tuple[Definition, ...]:
    return tuple(
        Definition(key, kind, options, bool(required), applies_to)
        for key, kind, options, required, applies_to in json.loads(text)
    )


def _database(session: Session) -> str:
    return str(session.get_bind().engine.url)


def _remember(session: Session, text: str) -> tuple[Definition, ...]:
    """The rows of ``text``, now the session's (current) and the process's last known definitions."""
    known = _KNOWN.get(_database(session))
    rows = known[1] if known is not None and known[0] == text else _parse(text)
    _KNOWN[_database(session)] = (text, rows)
    session.info[_ACTIVE] = rows
    session.info.pop(_ASSUMED, None)
    return rows


def _read(session: Session) -> tuple[Definition, ...]:
    return _remember(session, session.execute(_read_statement(session.get_bind().dialect.name)).scalar_one())


def _active(session: Session, kind: str) -> list[Definition]:
    """The active definitions for ``kind``, in order.

    Read once per session (a request's session lives for that request): a create validates the
    new record's custom values and then shows them, and read them twice. The writes below forget them.
    """
    rows = session.info.get(_ACTIVE)
    if rows is None:
        rows = _read(session)
    return [d for d in rows if d.applies_to in (kind, "both")]


def assume_known(session: Session) -> str | None:
    """Lets the session use the definitions this process read last, unread, for a create that checks
    them afterwards in its own ``INSERT`` (``active_text`` in its ``RETURNING``): the statement they
    cost was a tenth of a create (bench/bench_customer_create.py). Returns the text they were read
    as (for :func:`confirm`), or None when the session reads them as before (none known yet, or the
    session holds its own)."""
    if _ACTIVE in session.info:
        return None
    known = _KNOWN.get(_database(session))
    if known is None:
        return None
    session.info[_ACTIVE] = known[1]
    session.info[_ASSUMED] = known[0]
    return known[0]


def confirm(session: Session, text: str | None = None) -> bool:
    """Whether the definitions the session assumed (:func:`assume_known`) are the active ones: ``text``
    as the database answered it in the same transaction, else read now. When they are not, the
    session holds the current ones from then on (validate again with them)."""
    assumed = session.info.get(_ASSUMED)
    if assumed is None:
        return True
    if text is None:
        text = session.execute(_read_statement(session.get_bind().dialect.name)).scalar_one()
    _remember(session, text)
    return text == assumed


def _forget(session: Session) -> None:
    session.info.pop(_ACTIVE, None)
    session.info.pop(_ASSUMED, None)
    _KNOWN.pop(_database(session), None)


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
