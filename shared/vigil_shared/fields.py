"""Marshmallow fields shared by every service's schemas."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

READ_ONLY_MESSAGE = "Read-only: set by the server or by its own operation."


class TrimmedString(fields.String):
    """A string with surrounding white space removed; an empty result counts as missing text."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> str:
        result = super()._deserialize(value, attr, data, **kwargs)
        return result.strip() if isinstance(result, str) else result


class Timestamp(fields.AwareDateTime):
    """A moment in UTC written as every Vigil response writes it: ``2026-11-22T14:03:00Z``.

    Read, an offset-less time is taken as UTC and every moment is turned into UTC: one UTC cannot hold
    (``0001-01-01T00:00:00+01:00``, ``9999-12-31T23:59:59-01:00``) is refused (422) here, where it
    would otherwise fail as it is stored or compared (a 500). Every moment a request carries (body or
    query) is this field.
    """

    default_error_messages = {
        "out_of_range": "Not a moment that can be stored: it falls outside years 1 to 9999 in UTC."
    }

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(format="iso", default_timezone=UTC, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> datetime:
        moment = super()._deserialize(value, attr, data, **kwargs)
        try:
            return moment.astimezone(UTC)
        except OverflowError:
            raise self.make_error("out_of_range") from None

    def _serialize(self, value: datetime | None, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def text(max_length: int, **kwargs: Any) -> TrimmedString:
    """Optional free text of at most ``max_length`` characters (null clears it)."""
    return TrimmedString(allow_none=True, validate=validate.Length(max=max_length), **kwargs)


class ReadOnlyAwareInput(Schema):
    """A request body: undeclared fields are refused, the server-owned ones (``READ_ONLY``: these, and
    what a service's base input adds) named as read-only, so a client learns that an action sets them."""

    READ_ONLY: frozenset[str] = frozenset({"id", "customer_id", "location_id", "created_at", "updated_at", "version"})

    def handle_error(self, error: ValidationError, data: Any, *, many: bool, **kwargs: Any) -> None:
        messages = error.messages if isinstance(error.messages, dict) else {}
        for name in self.READ_ONLY & set(messages):
            if messages[name] == [self.error_messages["unknown"]]:
                messages[name] = [READ_ONLY_MESSAGE]


def _field_dumper(name: str, field: fields.Field[Any]) -> Callable[[Mapping[str, Any]], Any]:
    """One field's dump: marshmallow's own where it does more than convert the value's type."""
    kind = type(field)
    if kind is fields.String or kind is TrimmedString or kind is fields.Email:
        return lambda item: None if (value := item.get(name)) is None else str(value)
    if kind is fields.Integer and not field.as_string:  # type: ignore[attr-defined]
        return lambda item: None if (value := item.get(name)) is None else int(value)
    if kind is fields.Boolean:
        return lambda item: None if (value := item.get(name)) is None else bool(value)
    if kind is Timestamp:  # its _serialize, without the machinery around it
        return lambda item: (
            None if (value := item.get(name)) is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        )
    nested = _plain_nested(field)
    if nested is not None:
        inner = schema_dumper(nested())
        return lambda item: None if (value := item.get(name)) is None else inner(value)
    listed = _plain_nested(field.inner) if kind is fields.List else None  # type: ignore[attr-defined]
    if listed is not None:  # a list of nested records: each one dumped as the nested schema dumps it
        each = schema_dumper(listed())
        return lambda item: None if (value := item.get(name)) is None else [each(one) for one in value]
    return lambda item: field.serialize(name, item)


def _plain_nested(field: Any) -> type[Schema] | None:
    """The schema class of a ``Nested`` field that dumps one record with all its fields, else None."""
    nested: Any = field.nested if type(field) is fields.Nested else None
    if isinstance(nested, type) and not (field.many or field.only or field.exclude):
        return nested
    return None


def schema_dumper(schema: Schema) -> Callable[[Mapping[str, Any]], dict[str, Any]]:
    """``schema.dump`` of one dict, at a fraction of the CPU, for a hot response built from plain values.

    Built once per schema: a string, integer, boolean, timestamp, nested-schema or list-of-nested field
    converts its value directly; any other field keeps marshmallow's ``serialize``. A key missing from the dict
    is left out, as marshmallow does. Each user pins its JSON to the schema's own dump in a test.
    """
    dumpers = [(name, field.data_key or name, _field_dumper(name, field)) for name, field in schema.dump_fields.items()]
    return lambda item: {key: dump(item) for name, key, dump in dumpers if name in item}
