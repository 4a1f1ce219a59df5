"""Versioned message contracts between services.

An event travels as ``{"id", "type", "version", "occurred_at", "data", "request_id"}``; ``data``
follows the schema registered here for ``(type, version)``. A breaking change is a new version,
registered beside the old one until nobody sends the old one.

Delivery: the relay of the owning service sends every event as the task
``<subscriber>.handle_event.v1`` to each subscriber's own queue. Subscriptions are part of the
contract, so they live here too.
"""
from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from marshmallow import EXCLUDE, Schema, ValidationError, fields, validate


class _Strict(Schema):
    class Meta:
        unknown = EXCLUDE  # a newer producer may add fields; consumers ignore what they do not know


class EventEnvelopeV1(_Strict):
    id = fields.UUID(required=True)
    type = fields.String(required=True, validate=validate.Length(min=3, max=100))
    version = fields.Integer(required=True, validate=validate.Range(min=1))
    occurred_at = fields.AwareDateTime(required=True)
    data = fields.Dict(required=True)
    request_id = fields.String(allow_none=True, load_default=None)
    source = fields.String(required=True)


# --- customer service events -------------------------------------------------------------------
# Events carry ids, kinds, locations and the names of changed fields, never confidential values.

class CustomerCreatedV1(_Strict):
    customer_id = fields.Integer(required=True)
    location_id = fields.Integer(allow_none=True, load_default=None)
    kind = fields.String(validate=validate.OneOf(["customer", "lead"]), load_default="customer")


class CustomerUpdatedV1(_Strict):
    customer_id = fields.Integer(required=True)
    changed = fields.List(fields.String(), required=True)
    location_id = fields.Integer(allow_none=True, load_default=None)


class CustomerConvertedV1(_Strict):
    customer_id = fields.Integer(required=True)
    location_id = fields.Integer(allow_none=True, load_default=None)


class CustomerDeletedV1(_Strict):
    customer_id = fields.Integer(required=True)


# --- property service events -------------------------------------------------------------------

class PropertyCreatedV1(_Strict):
    property_id = fields.Integer(required=True)
    customer_id = fields.Integer(required=True)
    account_number = fields.String(allow_none=True, load_default=None)


class PropertyUpdatedV1(_Strict):
    property_id = fields.Integer(required=True)
    customer_id = fields.Integer(required=True)
    changed = fields.List(fields.String(), required=True)
    account_number = fields.String(allow_none=True, load_default=None)


class PropertyMonitoringChangedV1(_Strict):
    property_id = fields.Integer(required=True)
    customer_id = fields.Integer(required=True)
    old_status = fields.String(required=True)
    new_status = fields.String(required=True)


class PropertyStateV1(_Strict):
    """Deactivated, reactivated or deleted: which property, of which customer."""

    property_id = fields.Integer(required=True)
    customer_id = fields.Integer(required=True)


class PropertyTransferredV1(_Strict):
    property_id = fields.Integer(required=True)
    from_customer_id = fields.Integer(required=True)
    to_customer_id = fields.Integer(required=True)
    account_number = fields.String(allow_none=True, load_default=None)
    # who moved it and why, for both customers' history (optional: added without a new version)
    actor_id = fields.String(allow_none=True, load_default=None)
    actor_name = fields.String(allow_none=True, load_default=None)
    source = fields.String(allow_none=True, load_default=None)
    reason = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500))


EVENT_SCHEMAS: dict[tuple[str, int], type[Schema]] = {
    ("customer.created", 1): CustomerCreatedV1,
    ("customer.updated", 1): CustomerUpdatedV1,
    ("customer.converted", 1): CustomerConvertedV1,
    ("customer.deleted", 1): CustomerDeletedV1,
    ("property.created", 1): PropertyCreatedV1,
    ("property.updated", 1): PropertyUpdatedV1,
    ("property.monitoring_changed", 1): PropertyMonitoringChangedV1,
    ("property.deactivated", 1): PropertyStateV1,
    ("property.reactivated", 1): PropertyStateV1,
    ("property.deleted", 1): PropertyStateV1,
    ("property.transferred", 1): PropertyTransferredV1,
}

SUBSCRIPTIONS: dict[str, frozenset[str]] = {
    # service -> event types its worker consumes
    "property": frozenset({"customer.created", "customer.updated", "customer.converted", "customer.deleted"}),
    "customer": frozenset({"property.created", "property.updated", "property.deleted", "property.transferred"}),
}

HANDLE_EVENT_TASK = "{service}.handle_event.v1"


def handle_event_task(service: str) -> str:
    return HANDLE_EVENT_TASK.format(service=service)


def subscribers(event_type: str) -> list[str]:
    return sorted(service for service, types in SUBSCRIPTIONS.items() if event_type in types)


class UnknownContract(ValueError):
    pass


@dataclass(frozen=True)
class Event:
    id: str
    type: str
    version: int
    occurred_at: datetime
    data: dict[str, Any]
    source: str
    request_id: str | None = None

    def to_message(self) -> dict[str, Any]:
        return {
            "id": self.id, "type": self.type, "version": self.version,
            "occurred_at": self.occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
            "data": self.data, "source": self.source, "request_id": self.request_id,
        }


def validate_data(event_type: str, version: int, data: dict[str, Any]) -> dict[str, Any]:
    schema = EVENT_SCHEMAS.get((event_type, version))
    if schema is None:
        raise UnknownContract(f"no contract for event {event_type} v{version}")
    errors = schema().validate(data)
    if errors:
        raise ValidationError(errors)
    valid: dict[str, Any] = schema().dump(schema().load(data))
    return valid


def new_event(event_type: str, data: dict[str, Any], *, source: str, version: int = 1,
              request_id: str | None = None) -> Event:
    return Event(id=str(uuid.uuid4()), type=event_type, version=version,
                 occurred_at=datetime.now(UTC), data=validate_data(event_type, version, data),
                 source=source, request_id=request_id)


def parse_event(message: dict[str, Any]) -> Event:
    """Validates an incoming message against the envelope and its data contract."""
    envelope = EventEnvelopeV1().load(message)
    data = validate_data(envelope["type"], envelope["version"], envelope["data"])
    return Event(id=str(envelope["id"]), type=envelope["type"], version=envelope["version"],
                 occurred_at=envelope["occurred_at"], data=data, source=envelope["source"],
                 request_id=envelope["request_id"])
