"""Celery tasks of the customer service: the property events that keep the account-number replica current."""

from __future__ import annotations

from sqlalchemy.orm import Session

from vigil_shared.commands import SOURCES
from vigil_shared.identity import Identity
from vigil_shared.messaging.contracts import (
    CreditCheckApplied,
    Event,
    OperationStepDone,
    PropertyCreated,
    PropertyDeleted,
    PropertyTransferred,
    PropertyUpdated,
)
from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.permissions import ALL_PERMISSIONS
from vigil_shared.runtime import ServiceRuntime

from . import accounts, archiving, customers, history
from .customers import Context
from .models import Customer


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    """The consumer with its handlers, apart from Celery so tests can feed it messages directly."""
    consumer = runtime.consumer()

    @consumer.on(PropertyCreated)
    def property_created(session: Session, event: Event[PropertyCreated]) -> None:
        created = event.payload
        accounts.upsert(session, created.property_id, created.customer_id, created.account_number)

    @consumer.on(PropertyUpdated)
    def property_updated(session: Session, event: Event[PropertyUpdated]) -> None:
        updated = event.payload
        accounts.upsert(session, updated.property_id, updated.customer_id, updated.account_number)
        if "central_station" in updated.changed:  # linked to (or unlinked from) a central station
            accounts.station_linked(session, updated.property_id, updated.central_station)

    @consumer.on(PropertyTransferred)
    def property_transferred(session: Session, event: Event[PropertyTransferred]) -> None:
        moved = event.payload
        accounts.transferred(
            session, moved.property_id, moved.from_customer_id, moved.to_customer_id, moved.account_number
        )
        record_transfer(session, event)

    @consumer.on(PropertyDeleted)
    def property_deleted(session: Session, event: Event[PropertyDeleted]) -> None:
        accounts.deleted(session, event.payload.property_id, event.payload.customer_id)

    @consumer.on(OperationStepDone)
    def step_done(session: Session, event: Event[OperationStepDone]) -> None:
        archiving.step_reported(session, event.payload)  # a repeated report counts once

    @consumer.on(CreditCheckApplied)
    def credit_check_applied(session: Session, event: Event[CreditCheckApplied]) -> None:
        applied = event.payload
        if session.get(Customer, applied.customer_id) is None:
            return  # deleted meanwhile: nothing to score
        # the credit service checked `credit.apply` at the customer's location; history names who applied it
        actor = Identity(
            subject=applied.actor_id or "service:credit",
            username=applied.actor_name or "credit",
            kind="service",
            permissions=ALL_PERMISSIONS,
            request_id=event.request_id,
        )
        source = applied.source if applied.source in SOURCES.values() else "workflow"
        # the consumer's transaction holds the inbox row: the change joins it (domain code, no command)
        ctx = Context.of(runtime, session, actor, source=source)
        customer = customers.get_customer(session, applied.customer_id, for_update=True)
        customers.update(
            ctx, customer, {"credit_score": applied.score, "credit_tracking_number": applied.tracking_number}
        )

    return consumer


def record_transfer(session: Session, event: Event[PropertyTransferred]) -> None:
    """A property moved between customers (the new-homeowner case): both customers' history says so."""
    moved = event.payload
    actor = history.Actor(
        Identity(
            subject=moved.actor_id or "service:property",
            username=moved.actor_name or "property",
            request_id=event.request_id,
        ),
        source=moved.source or "workflow",
    )
    for customer_id, action in (
        (moved.from_customer_id, "property.transferred_out"),
        (moved.to_customer_id, "property.transferred_in"),
    ):
        if session.get(Customer, customer_id) is None:
            continue  # deleted meanwhile: its history went with it
        history.record(
            session,
            actor,
            customer_id,
            action,
            target_type="property",
            target_id=moved.property_id,
            field="customer_id",
            old=moved.from_customer_id,
            new=moved.to_customer_id,
        )


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
