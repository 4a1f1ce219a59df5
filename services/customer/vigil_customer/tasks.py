"""Celery tasks of the customer service: the property events that keep the account-number replica current."""
from __future__ import annotations

from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import accounts


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """The consumer with its handlers, apart from Celery so tests can feed it messages directly."""
    consumer = runtime.consumer()

    @consumer.on("property.created")
    def property_created(session, event):
        accounts.upsert(session, event.data["property_id"], event.data["customer_id"], event.data["account_number"])

    @consumer.on("property.updated")
    def property_updated(session, event):
        accounts.upsert(session, event.data["property_id"], event.data["customer_id"], event.data["account_number"])

    @consumer.on("property.transferred")
    def property_transferred(session, event):
        accounts.transferred(session, event.data["property_id"], event.data["from_customer_id"],
                             event.data["to_customer_id"], event.data["account_number"])

    @consumer.on("property.deleted")
    def property_deleted(session, event):
        accounts.deleted(session, event.data["property_id"], event.data["customer_id"])

    return consumer


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
