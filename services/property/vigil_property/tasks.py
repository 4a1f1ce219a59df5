"""Celery tasks of the property service: the customer events that keep its replica current."""
from __future__ import annotations

from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import customers_replica as replica


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """The consumer with its handlers, apart from Celery so tests can feed it messages directly."""
    consumer = runtime.consumer()

    @consumer.on("customer.created")
    def customer_created(session, event):
        replica.customer_created(session, event.data["customer_id"])

    @consumer.on("customer.deleted")
    def customer_deleted(session, event):
        replica.customer_deleted(session, event.data["customer_id"])

    return consumer


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
