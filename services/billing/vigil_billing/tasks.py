"""Celery tasks of the billing service: the customer events that keep its replica current.

``customer.created``/``updated``/``converted`` tell which customers exist, in which office location
(which decides who may see their billing), of which kind, under which parent and whether archived;
``customer.deleted`` removes everything billing holds for the customer.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from vigil_shared.messaging.contracts import CustomerConverted, CustomerCreated, CustomerDeleted, CustomerUpdated, Event
from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import accounts
from . import customers_replica as replica


def _facts(event: Event[Any]) -> dict[str, Any]:
    """What the event states beyond the location: a field is applied only when the event says it."""
    payload = event.payload
    if isinstance(payload, CustomerCreated):
        return {"kind": payload.kind, "parent_id": payload.parent_id, "archived": False}
    if isinstance(payload, CustomerConverted):
        return {"kind": "customer"}
    facts: dict[str, Any] = {}
    if "parent_id" in payload.changed:
        facts["parent_id"] = payload.parent_id
    if "archived_at" in payload.changed and payload.archived is not None:
        facts["archived"] = payload.archived
    return facts


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """The consumer with its handlers, apart from Celery so tests can feed it messages directly."""
    consumer = runtime.consumer()

    def customer_seen(session: Session, event: Event[Any]) -> None:  # created, updated or converted
        payload = event.payload
        replica.customer_seen(session, payload.customer_id, payload.location_id, event.occurred_at, **_facts(event))

    for payload_type in (CustomerCreated, CustomerUpdated, CustomerConverted):
        consumer.on(payload_type)(customer_seen)

    @consumer.on(CustomerDeleted)
    def customer_deleted(session: Session, event: Event[CustomerDeleted]) -> None:
        customer_id = event.payload.customer_id
        replica.customer_deleted(session, customer_id)
        accounts.remove_customer(session, customer_id)

    return consumer


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
