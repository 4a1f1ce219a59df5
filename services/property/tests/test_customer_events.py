import threading

import pytest
from sqlalchemy import func, select

from vigil_property import properties
from vigil_property.models import KnownCustomer, Property, messaging
from vigil_property.tasks import event_consumer, register_tasks
from vigil_shared.messaging.contracts import SUBSCRIPTIONS, handle_event_task, new_event


def message(event_type, customer_id):
    return new_event(event_type, {"customer_id": customer_id}, source="customer").to_message()


@pytest.fixture
def consumer(runtime):
    return event_consumer(runtime)


def properties_of(session, customer_id):
    return session.scalars(select(Property.id).where(Property.customer_id == customer_id).order_by(Property.id)).all()


def replica(session, customer_id):
    return session.scalar(select(KnownCustomer.deleted).where(KnownCustomer.customer_id == customer_id))


def test_handles_exactly_the_subscribed_events(runtime, consumer):
    assert set(consumer.handlers) == SUBSCRIPTIONS["property"]
    register_tasks(runtime)
    assert handle_event_task("property") in runtime.celery.tasks


def test_customer_created_makes_the_customer_known(api, session, consumer):
    assert consumer.consume(message("customer.created", 3)) is True
    assert replica(session, 3) is False
    assert api.post("/api/v1/customers/3/properties", json={"address": "1 Bay Street"}).status_code == 201


def test_customer_deleted_removes_its_properties_and_only_theirs(api, session, consumer):
    for customer_id in (1, 2):
        consumer.consume(message("customer.created", customer_id))
    for i in range(3):
        assert api.post("/api/v1/customers/1/properties", json={"account_number": f"ONE-{i}"}).status_code == 201
    kept = api.post("/api/v1/customers/2/properties", json={"account_number": "TWO-0"}).json["id"]

    deleted = message("customer.deleted", 1)
    assert consumer.consume(deleted) is True
    assert properties_of(session, 1) == []
    assert properties_of(session, 2) == [kept]
    assert replica(session, 1) is True
    assert api.post("/api/v1/customers/1/properties", json={}).status_code == 422

    processed = session.scalar(select(func.count()).select_from(messaging.ProcessedEvent))
    assert consumer.consume(deleted) is False  # the same event again: nothing happens
    assert session.scalar(select(func.count()).select_from(messaging.ProcessedEvent)) == processed
    assert properties_of(session, 2) == [kept] and replica(session, 1) is True


def test_a_late_created_event_does_not_resurrect_a_deleted_customer(api, session, consumer):
    consumer.consume(message("customer.created", 4))
    consumer.consume(message("customer.deleted", 4))
    assert consumer.consume(message("customer.created", 4)) is True
    assert replica(session, 4) is True
    assert api.post("/api/v1/customers/4/properties", json={}).status_code == 422


def test_deleted_before_created_leaves_a_tombstone(session, consumer):
    assert consumer.consume(message("customer.deleted", 5)) is True
    consumer.consume(message("customer.created", 5))
    assert replica(session, 5) is True


def test_a_deletion_racing_a_create_waits_for_it_and_removes_the_new_property(runtime, session, consumer):
    consumer.consume(message("customer.created", 6))
    with runtime.db.new_session() as request_transaction:
        properties.create_property(request_transaction, 6, {"address": "1 Race Lane"}, customer_exists=None)
        worker = threading.Thread(target=consumer.consume, args=(message("customer.deleted", 6),))
        worker.start()
        worker.join(0.3)
        assert worker.is_alive()  # blocked by the create's lock on the replica entry
        request_transaction.commit()
    worker.join(15)
    assert not worker.is_alive()
    assert properties_of(session, 6) == [] and replica(session, 6) is True
