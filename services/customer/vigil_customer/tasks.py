"""Celery tasks of the customer service: the property events that keep the account-number replica current."""
from __future__ import annotations

from vigil_shared.identity import Identity
from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import accounts, history
from .models import Customer


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
        data = event.data
        accounts.transferred(session, data["property_id"], data["from_customer_id"], data["to_customer_id"],
                             data["account_number"])
        record_transfer(session, event)

    @consumer.on("property.deleted")
    def property_deleted(session, event):
        accounts.deleted(session, event.data["property_id"], event.data["customer_id"])

    return consumer


def record_transfer(session, event) -> None:
    """A property moved between customers (the new-homeowner case): both customers' history says so."""
    data = event.data
    actor = history.Actor(Identity(subject=data.get("actor_id") or "service:property",
                                   username=data.get("actor_name") or "property", request_id=event.request_id),
                          source=data.get("source") or "workflow")
    for customer_id, action in ((data["from_customer_id"], "property.transferred_out"),
                                (data["to_customer_id"], "property.transferred_in")):
        if session.get(Customer, customer_id) is None:
            continue  # deleted meanwhile: its history went with it
        history.record(session, actor, customer_id, action, target_type="property", target_id=data["property_id"],
                       field="customer_id", old=data["from_customer_id"], new=data["to_customer_id"])


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
