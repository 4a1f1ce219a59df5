"""Versioned message contracts between services.

An event travels as ``{"id", "type", "version", "occurred_at", "data", "request_id"}``. Each
``(type, version)`` is declared once, as a frozen dataclass marked ``@contract(type, version)``:
producers build that payload (``outbox.add(session, CustomerDeleted(customer_id=7))``), consumers
read it (``event.payload.customer_id``), and the schema both ends validate ``data`` with is derived
from its fields. A breaking change is a new version, a new class declared beside the old one until
nobody sends the old one.

Delivery: the relay of the owning service sends every event as the task
``<subscriber>.handle_event.v1`` to each subscriber's own queue. Subscriptions are part of the
contract, so they live here too.
"""

from __future__ import annotations

import builtins
import dataclasses
import functools
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import UnionType
from typing import Any, Generic, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from marshmallow import EXCLUDE, Schema, fields, validate


class UnknownContract(ValueError):
    pass


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


# --- how a payload class becomes a contract --------------------------------------------------------

P = TypeVar("P")


@dataclass(frozen=True)
class Contract(Generic[P]):
    """One versioned event: its name, its version, the payload class and the schema derived from it."""

    type: str
    version: int
    payload: builtins.type[P]
    schema: builtins.type[Schema]

    @functools.cached_property
    def _schema(self) -> Schema:
        """One instance, built once (building a schema deep-copies its fields: a batch job writing
        100,000 events would spend most of its time there); load and dump keep no state on it."""
        return self.schema()

    def write(self, payload: Any) -> dict[str, Any]:
        """The ``data`` of a message: the payload validated, then in its wire form."""
        data: dict[str, Any] = self._schema.dump(self.load(dataclasses.asdict(payload)))
        return data

    def write_many(self, payloads: list[Any]) -> list[dict[str, Any]]:
        """:meth:`write` for many payloads of this contract at once (each validated, one schema pass)."""
        names = [f.name for f in dataclasses.fields(self.payload)]  # type: ignore[arg-type]
        loaded = self._schema.load([{name: getattr(p, name) for name in names} for p in payloads], many=True)
        data: list[dict[str, Any]] = self._schema.dump(loaded, many=True)
        return data

    def read(self, data: dict[str, Any]) -> P:
        """The payload of an incoming ``data`` (raises ``ValidationError``; unknown keys are ignored)."""
        return self.payload(**self.load(data))

    def load(self, data: dict[str, Any]) -> dict[str, Any]:
        loaded: dict[str, Any] = self._schema.load(data)
        return loaded


CONTRACTS: dict[tuple[str, int], Contract[Any]] = {}
_CONTRACT_OF: dict[type, Contract[Any]] = {}


def contract(event_type: str, version: int = 1) -> Callable[[type[P]], type[P]]:
    """Declares a frozen dataclass as the payload of ``event_type`` v``version``.

    The marshmallow schema that validates it on both ends is derived from the fields: ``int``,
    ``str``, ``list[str]``, ``X | None`` (may be null), ``Literal[...]`` (one of), a default (optional,
    filled in when absent) and ``field(metadata={"validate": ...})`` for anything more.
    """

    def declare(cls: type[P]) -> type[P]:
        if not dataclasses.is_dataclass(cls) or not cls.__dataclass_params__.frozen:  # type: ignore[attr-defined]
            raise TypeError(f"{cls.__name__} must be a frozen dataclass: an event does not change once written")
        key = (event_type, version)
        if key in CONTRACTS:
            raise ValueError(f"{event_type} v{version} is declared twice")
        schema = _Strict.from_dict(
            {f.name: _schema_field(cls, f) for f in dataclasses.fields(cls)}, name=f"{cls.__name__}Schema"
        )
        CONTRACTS[key] = _CONTRACT_OF[cls] = Contract(event_type, version, cls, schema)
        return cls

    return declare


def contract_of(payload_type: type) -> Contract[Any]:
    try:
        return _CONTRACT_OF[payload_type]
    except KeyError:
        raise UnknownContract(f"{payload_type.__name__} is not a declared event payload") from None


def payload_type(event_type: str, version: int = 1) -> type:
    """The payload class of ``event_type`` v``version`` (raises ``UnknownContract``)."""
    return _lookup(event_type, version).payload


def _lookup(event_type: str, version: int) -> Contract[Any]:
    found = CONTRACTS.get((event_type, version))
    if found is None:
        raise UnknownContract(f"no contract for event {event_type} v{version}")
    return found


_SCALARS: dict[type, type[fields.Field[Any]]] = {int: fields.Integer, str: fields.String, bool: fields.Boolean}


def _schema_field(cls: type, attribute: dataclasses.Field[Any]) -> fields.Field[Any]:
    hint = get_type_hints(cls)[attribute.name]
    options: dict[str, Any] = {}
    if "validate" in attribute.metadata:
        options["validate"] = attribute.metadata["validate"]
    arguments = [arg for arg in get_args(hint) if arg is not type(None)]
    if get_origin(hint) in (Union, UnionType) and len(arguments) < len(get_args(hint)):
        options["allow_none"] = True
        hint = arguments[0]
    if attribute.default is not dataclasses.MISSING:
        options["load_default"] = attribute.default
    else:
        options["required"] = True
    if get_origin(hint) is Literal:
        choices = list(get_args(hint))
        options["validate"] = validate.OneOf(choices)
        return _SCALARS[type(choices[0])](**options)
    if get_origin(hint) is list:
        return fields.List(_SCALARS[get_args(hint)[0]](), **options)
    if hint is dict or get_origin(hint) is dict:
        return fields.Dict(keys=fields.String(), **options)
    return _SCALARS[hint](**options)


# --- customer service events -------------------------------------------------------------------
# Events carry ids, kinds, locations and the names of changed fields, never confidential values.


@contract("customer.created", 1)
@dataclass(frozen=True)
class CustomerCreated:
    customer_id: int
    location_id: int | None = None
    kind: Literal["customer", "lead"] = "customer"
    # the ADT PreCheck is to start in the background (an ADT company with PreCheck Order Enabled);
    # optional, added without a new version: older consumers ignore it
    precheck: bool = False
    # the parent customer a sub-customer bills through (optional: added without a new version)
    parent_id: int | None = None
    # Optional, added without a new version: the customer's Monitored By (the monitoring company), which
    # tells the property service which central station's messages match its properties; with
    # ``restricted`` as in ``customer.updated`` (its section's view permission), so readers of the
    # event who may not see the field do not get its value either.
    monitoring_company_id: int | None = None
    restricted: dict[str, str] | None = None


@contract("customer.updated", 1)
@dataclass(frozen=True)
class CustomerUpdated:
    customer_id: int
    changed: list[str]
    location_id: int | None = None
    # Optional, added without a new version: ``parent_id`` is the record's ``parent_customer_id``
    # (None: unlinked) and ``archived`` whether it is archived now, each as of this change.
    parent_id: int | None = None
    archived: bool | None = None
    # Optional, added without a new version: the changed fields a reader sees only with a view
    # permission beyond ``customers.view`` (their section's), ``{field: permission}``. Readers of the
    # event (the change feed, webhooks) leave those names out for whoever lacks it, and never pass
    # this map on.
    restricted: dict[str, str] | None = None
    # Optional, added without a new version: the new Monitored By when ``monitoring_company_id`` is in
    # ``changed`` (None otherwise, or when it was cleared); a reader who may not see it does not get it.
    monitoring_company_id: int | None = None


@contract("customer.converted", 1)
@dataclass(frozen=True)
class CustomerConverted:
    customer_id: int
    location_id: int | None = None


@contract("customer.deleted", 1)
@dataclass(frozen=True)
class CustomerDeleted:
    customer_id: int


# --- property service events -------------------------------------------------------------------


@contract("property.created", 1)
@dataclass(frozen=True)
class PropertyCreated:
    property_id: int
    customer_id: int
    account_number: str | None = None


@contract("property.updated", 1)
@dataclass(frozen=True)
class PropertyUpdated:
    property_id: int
    customer_id: int
    changed: list[str]
    account_number: str | None = None
    # with "central_station" in ``changed``: the station it is now linked to, None once unlinked
    # (optional: added without a new version)
    central_station: str | None = None


@contract("property.monitoring_changed", 1)
@dataclass(frozen=True)
class PropertyMonitoringChanged:
    property_id: int
    customer_id: int
    old_status: str
    new_status: str


@dataclass(frozen=True)
class PropertyState:
    """Deactivated, reactivated or deleted: which property, of which customer."""

    property_id: int
    customer_id: int


@contract("property.deactivated", 1)
@dataclass(frozen=True)
class PropertyDeactivated(PropertyState):
    pass


@contract("property.reactivated", 1)
@dataclass(frozen=True)
class PropertyReactivated(PropertyState):
    pass


@contract("property.deleted", 1)
@dataclass(frozen=True)
class PropertyDeleted(PropertyState):
    pass


@contract("property.transferred", 1)
@dataclass(frozen=True)
class PropertyTransferred:
    property_id: int
    from_customer_id: int
    to_customer_id: int
    account_number: str | None = None
    # who moved it and why, for both customers' history (optional: added without a new version)
    actor_id: str | None = None
    actor_name: str | None = None
    source: str | None = None
    reason: str | None = field(default=None, metadata={"validate": validate.Length(max=500)})


# --- credit service events ---------------------------------------------------------------------
# Ids, scores and transaction ids only: the SSN and birthdate never travel in a message.


@contract("credit.check_requested", 1)
@dataclass(frozen=True)
class CreditCheckRequested:
    """A pull to make: the credit service's own worker takes it from here (long, external work)."""

    check_id: int
    customer_id: int


@contract("credit.check_applied", 1)
@dataclass(frozen=True)
class CreditCheckApplied:
    """A check became the customer's active one: the customer service sets its beacon score and
    credit tracking number and records the change in its history, as ``actor_name`` through ``source``."""

    check_id: int
    customer_id: int
    score: int
    tracking_number: str | None = None
    actor_id: str | None = None
    actor_name: str | None = None
    source: str | None = None


@contract("credit.precheck_requested", 1)
@dataclass(frozen=True)
class PreCheckRequested:
    """An ADT PreCheck to run (a refresh, or a create's): the credit worker takes it from here."""

    precheck_id: int
    customer_id: int


# --- the archive saga (docs/archive.md) ----------------------------------------------------------
# The customer service orchestrates: in the transaction that archives (or unarchives) the customers
# it writes an operation with one pending step per participant and customer, and one of the events
# below. Each participant applies it in its inbox transaction (idempotent: it changes only what is
# not changed yet, stamping each cancelled item with ``operation_id``) and reports each customer's
# step with ``OperationStepDone`` from its own outbox, in that same transaction. The customer
# service records the reports on the operation (a repeat counts once) until every step is in.

ARCHIVE_PARTICIPANTS: tuple[str, ...] = ("property", "billing")
"""The services that own records under a customer and take part in archiving it. Adding one is this
declaration plus its handlers of the two events below and its ``GET /api/v1/archive-items/<service>``."""


@contract("customer.archive_requested", 1)
@dataclass(frozen=True)
class CustomerArchiveRequested:
    """``customer_ids`` (a parent first, then its sub-customers) are archived: cancel their future items."""

    operation_id: str
    customer_ids: list[int]


@contract("customer.unarchive_requested", 1)
@dataclass(frozen=True)
class CustomerUnarchiveRequested:
    """``customer_ids`` are writable again; with ``restore_cancelled``, restore what
    ``archive_operation_ids`` cancelled and still makes sense (a future appointment, say)."""

    operation_id: str
    customer_ids: list[int]
    restore_cancelled: bool = False
    archive_operation_ids: list[str] | None = None


@contract("operation.step_done", 1)
@dataclass(frozen=True)
class OperationStepDone:
    """A participant's report of one step of an operation (``vigil_shared.operations``)."""

    operation_id: str
    participant: str
    target_type: str
    target_id: str
    status: Literal["done", "failed"] = "done"
    result: dict[str, Any] | None = None
    error: str | None = field(default=None, metadata={"validate": validate.Length(max=500)})


_SAGA_EVENTS = frozenset({"customer.archive_requested", "customer.unarchive_requested"})

# --- billing service events ----------------------------------------------------------------------
# Amounts are integer minor units of ``currency``; never a card number or bank account.


@contract("invoice.issued", 1)
@dataclass(frozen=True)
class InvoiceIssued:
    invoice_id: int
    customer_id: int
    number: int
    total: int
    currency: str
    due_date: str  # YYYY-MM-DD
    bill_to_customer_id: int | None = None  # the parent it is billed through, when not the customer itself


@contract("invoice.voided", 1)
@dataclass(frozen=True)
class InvoiceVoided:
    invoice_id: int
    customer_id: int
    number: int | None = None
    reason: str | None = field(default=None, metadata={"validate": validate.Length(max=500)})


@contract("payment.received", 1)
@dataclass(frozen=True)
class PaymentReceived:
    payment_id: int
    customer_id: int
    amount: int
    currency: str
    method: Literal["cash", "check", "card", "ach"]


@contract("payment.failed", 1)
@dataclass(frozen=True)
class PaymentFailed:
    payment_id: int
    customer_id: int
    amount: int
    currency: str
    failure_code: str
    soft_decline: bool = False


@contract("payment.refunded", 1)
@dataclass(frozen=True)
class PaymentRefunded:
    payment_id: int
    customer_id: int
    amount: int
    currency: str


SUBSCRIPTIONS: dict[str, frozenset[str]] = {
    # service -> event types its worker consumes
    "property": frozenset({"customer.created", "customer.updated", "customer.converted", "customer.deleted"}),
    "customer": frozenset(
        {
            "property.created",
            "property.updated",
            "property.deleted",
            "property.transferred",
            "operation.step_done",
            "credit.check_applied",
        }
    ),
    "billing": frozenset({"customer.created", "customer.updated", "customer.converted", "customer.deleted"}),
    "credit": frozenset(
        {
            "credit.check_requested",
            "credit.precheck_requested",
            "customer.created",
            "customer.updated",
            "customer.deleted",
        }
    ),
    # the change feed and outgoing webhooks (vigil_gateway.worker): every event
    "gateway": frozenset(event_type for event_type, _ in CONTRACTS),
}
for _participant in ARCHIVE_PARTICIPANTS:
    SUBSCRIPTIONS[_participant] = SUBSCRIPTIONS.get(_participant, frozenset()) | _SAGA_EVENTS

HANDLE_EVENT_TASK = "{service}.handle_event.v1"
# The subscribers whose worker takes a relay cycle's events as one task (a list of messages, in order):
# the gateway keeps every event of a group in one transaction, so one task per event was its Celery
# overhead alone (issue 14). Each event stays idempotent (the gateway's feed is its inbox) and a
# failed task is retried whole: the events it already kept are repeats then.
HANDLE_EVENTS_TASK = "{service}.handle_events.v1"
BATCHED_SUBSCRIBERS = frozenset({"gateway"})


def handle_event_task(service: str) -> str:
    return HANDLE_EVENT_TASK.format(service=service)


def handle_events_task(service: str) -> str:
    return HANDLE_EVENTS_TASK.format(service=service)


def subscribers(event_type: str) -> list[str]:
    return sorted(service for service, types in SUBSCRIPTIONS.items() if event_type in types)


@dataclass(frozen=True)
class Event(Generic[P]):
    """An event as code sees it: the envelope, and ``payload`` typed by the contract it names."""

    id: str
    occurred_at: datetime
    payload: P
    source: str
    request_id: str | None = None

    @property
    def contract(self) -> Contract[P]:
        return contract_of(type(self.payload))

    @property
    def type(self) -> str:
        return self.contract.type

    @property
    def version(self) -> int:
        return self.contract.version

    @property
    def data(self) -> dict[str, Any]:
        """The payload in its wire form."""
        return self.contract.write(self.payload)

    def to_message(self) -> dict[str, Any]:
        return message(
            self.id,
            self.type,
            self.version,
            self.occurred_at,
            self.data,
            source=self.source,
            request_id=self.request_id,
        )


def message(
    event_id: str,
    event_type: str,
    version: int,
    occurred_at: datetime,
    data: dict[str, Any],
    *,
    source: str,
    request_id: str | None,
) -> dict[str, Any]:
    """The wire form of an event (what the relay publishes and ``parse_event`` reads)."""
    return {
        "id": event_id,
        "type": event_type,
        "version": version,
        "occurred_at": occurred_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
        "data": data,
        "source": source,
        "request_id": request_id,
    }


def new_event(payload: Any, *, source: str, request_id: str | None = None) -> Event[Any]:
    """A new event carrying ``payload``, an instance of a declared contract class, validated now."""
    contract_of(type(payload)).write(payload)  # fails here, at the producer, rather than at every consumer
    return Event(
        id=str(uuid.uuid4()), occurred_at=datetime.now(UTC), payload=payload, source=source, request_id=request_id
    )


def parse_event(message: dict[str, Any]) -> Event[Any]:
    """Validates an incoming message against the envelope and its data contract."""
    envelope = EventEnvelopeV1().load(message)
    payload = _lookup(envelope["type"], envelope["version"]).read(envelope["data"])
    return Event(
        id=str(envelope["id"]),
        occurred_at=envelope["occurred_at"],
        payload=payload,
        source=envelope["source"],
        request_id=envelope["request_id"],
    )
