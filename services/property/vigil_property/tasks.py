"""Celery tasks of the property service: the customer events that keep its replica current.

``customer.created``/``updated``/``converted`` tell which customers exist and in which office
location (which decides who may see their properties); ``customer.deleted`` removes everything the
service holds for the customer and announces each removed property.
"""
from __future__ import annotations

from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import customers_replica as replica
from . import properties


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """The consumer with its handlers, apart from Celery so tests can feed it messages directly."""
    consumer = runtime.consumer()

    def customer_seen(session, event):
        replica.customer_seen(session, event.data["customer_id"], event.data.get("location_id"), event.occurred_at)

    for event_type in ("customer.created", "customer.updated", "customer.converted"):
        consumer.on(event_type)(customer_seen)

    @consumer.on("customer.deleted")
    def customer_deleted(session, event):
        customer_id = event.data["customer_id"]
        replica.customer_deleted(session, customer_id)
        properties.remove_customer(session, runtime.outbox(event.request_id), customer_id)

    return consumer


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
