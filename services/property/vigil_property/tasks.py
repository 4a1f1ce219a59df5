"""Celery tasks of the property service: the customer events that keep its replica current.

``customer.created``/``updated``/``converted`` tell which customers exist and in which office
location (which decides who may see their properties); ``customer.deleted`` removes everything the
service holds for the customer and announces each removed property.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from vigil_shared.messaging.contracts import (
    CustomerArchiveRequested,
    CustomerUnarchiveRequested,
    Event,
)
from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import archiving, properties
from . import customers_replica as replica
from .history import Actor


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """The consumer with its handlers, apart from Celery so tests can feed it messages directly."""
    consumer = runtime.consumer()

    def remove_customer(session: Session, customer_id: int, event: Event[Any]) -> None:
        properties.remove_customer(session, runtime.outbox(event.request_id), customer_id)

    replica.follow(consumer, remove_customer)

    # the archive saga (docs/archive.md): each runs once per event (the inbox), its report in the same transaction
    saga_actor = Actor(id="service:customer", name="archive", source="workflow")

    @consumer.on(CustomerArchiveRequested)
    def archive_requested(session: Session, event: Event[CustomerArchiveRequested]) -> None:
        actor = Actor(saga_actor.id, saga_actor.name, saga_actor.source, event.request_id)
        archiving.archive(session, runtime.outbox(event.request_id), event.payload, event.occurred_at, actor)

    @consumer.on(CustomerUnarchiveRequested)
    def unarchive_requested(session: Session, event: Event[CustomerUnarchiveRequested]) -> None:
        actor = Actor(saga_actor.id, saga_actor.name, saga_actor.source, event.request_id)
        archiving.unarchive(session, runtime.outbox(event.request_id), event.payload, event.occurred_at, actor)

    return consumer


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
