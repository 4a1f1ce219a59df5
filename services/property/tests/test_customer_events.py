import threading
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from vigil_property import properties
from vigil_property.history import SYSTEM
from vigil_property.models import Equipment, KnownCustomer, Property, PropertyHistory, System, SystemKind, messaging
from vigil_property.tasks import event_consumer, register_tasks
from vigil_shared.messaging.contracts import SUBSCRIPTIONS, handle_event_task, new_event, payload_type
from vigil_shared.testing import assert_hidden, identity_with, unknown_path


def message(event_type, customer_id, occurred_at=None, **data):
    event = new_event(payload_type(event_type)(customer_id=customer_id, **data), source="customer").to_message()
    if occurred_at is not None:
        event["occurred_at"] = occurred_at.isoformat()
    return event


@pytest.fixture
def consumer(runtime):
    return event_consumer(runtime)


def properties_of(session, customer_id):
    return session.scalars(select(Property.id).where(Property.customer_id == customer_id).order_by(Property.id)).all()


def replica(session, customer_id):
    return session.scalar(select(KnownCustomer.deleted).where(KnownCustomer.customer_id == customer_id))


def location(session, customer_id):
    session.expire_all()
    return session.scalar(select(KnownCustomer.location_id).where(KnownCustomer.customer_id == customer_id))


def test_handles_exactly_the_subscribed_events(runtime, consumer):
    assert set(consumer.handlers) == SUBSCRIPTIONS["property"]
    register_tasks(runtime)
    assert handle_event_task("property") in runtime.celery.tasks


def test_customer_created_makes_the_customer_known_in_its_location(api, session, consumer, customer_service):
    customer_service.customers[3] = 2
    assert consumer.consume(message("customer.created", 3, location_id=2)) is True
    assert replica(session, 3) is False and location(session, 3) == 2
    created = api.post("/api/v1/customers/3/properties", json={"address": "1 Bay Street"})
    assert created.status_code == 201 and created.json["location_id"] == 2
    clerk_here = api.as_(identity_with("properties.view", locations=(1,)))
    path = f"/api/v1/properties/{created.json['id']}"
    assert_hidden(clerk_here.get(path), clerk_here.get(unknown_path(path, created.json["id"])))


def test_customer_updated_and_converted_move_the_customer_and_its_properties(api, session, consumer, customer_service):
    customer_service.customers[3] = 1
    consumer.consume(message("customer.created", 3, location_id=1, kind="lead"))
    property_id = api.post("/api/v1/customers/3/properties", json={}).json["id"]
    assert consumer.consume(message("customer.updated", 3, changed=["location_id"], location_id=2)) is True
    assert location(session, 3) == 2
    assert api.get(f"/api/v1/properties/{property_id}").json["location_id"] == 2
    assert consumer.consume(message("customer.converted", 3, location_id=1)) is True
    assert location(session, 3) == 1
    assert consumer.consume(message("customer.updated", 3, changed=["phone"])) is True  # says no location
    assert location(session, 3) == 1


def test_an_older_event_does_not_overwrite_a_newer_location(session, consumer):
    now = datetime.now(UTC)
    consumer.consume(message("customer.updated", 4, now, changed=["location_id"], location_id=2))
    consumer.consume(message("customer.created", 4, now - timedelta(minutes=1), location_id=1))
    assert location(session, 4) == 2
    consumer.consume(message("customer.updated", 4, now + timedelta(seconds=1), changed=["location_id"], location_id=1))
    assert location(session, 4) == 1


def test_updated_before_created_makes_the_customer_known(session, consumer):
    assert consumer.consume(message("customer.updated", 5, changed=["email"], location_id=1)) is True
    assert replica(session, 5) is False and location(session, 5) == 1


def test_customer_deleted_removes_its_properties_and_only_theirs(api, session, consumer, outbox, customer_service):
    for customer_id in (1, 2):
        customer_service.customers[customer_id] = 1
        consumer.consume(message("customer.created", customer_id, location_id=1))
    removed = [
        api.post("/api/v1/customers/1/properties", json={"account_number": f"ONE-{i}"}).json["id"] for i in range(3)
    ]
    kept = api.post("/api/v1/customers/2/properties", json={"account_number": "TWO-0"}).json["id"]
    api.patch(f"/api/v1/properties/{removed[0]}", json={"city": "Gone"})  # leaves history behind

    deleted = message("customer.deleted", 1)
    assert consumer.consume(deleted) is True
    assert properties_of(session, 1) == []
    assert properties_of(session, 2) == [kept]
    assert replica(session, 1) is True
    assert api.post("/api/v1/customers/1/properties", json={}).status_code == 422
    assert outbox("property.deleted") == [
        ("property.deleted", {"property_id": pid, "customer_id": 1}) for pid in removed
    ]

    processed = session.scalar(select(func.count()).select_from(messaging.ProcessedEvent))
    assert consumer.consume(deleted) is False  # the same event again: nothing happens
    assert session.scalar(select(func.count()).select_from(messaging.ProcessedEvent)) == processed
    assert properties_of(session, 2) == [kept] and replica(session, 1) is True
    assert len(outbox("property.deleted")) == 3


def test_a_late_created_event_does_not_resurrect_a_deleted_customer(api, session, consumer):
    consumer.consume(message("customer.created", 4, location_id=1))
    consumer.consume(message("customer.deleted", 4))
    assert consumer.consume(message("customer.created", 4, location_id=1)) is True
    assert consumer.consume(message("customer.updated", 4, changed=["x"], location_id=2)) is True
    assert replica(session, 4) is True and location(session, 4) == 1
    assert api.post("/api/v1/customers/4/properties", json={}).status_code == 422


def test_deleted_before_created_leaves_a_tombstone(session, consumer):
    assert consumer.consume(message("customer.deleted", 5)) is True
    consumer.consume(message("customer.created", 5, location_id=1))
    assert replica(session, 5) is True


def test_a_deletion_racing_a_create_waits_for_it_and_removes_the_new_property(runtime, session, consumer):
    consumer.consume(message("customer.created", 6, location_id=1))
    with runtime.db.new_session() as request_transaction:
        properties.create_property(
            request_transaction, runtime.outbox(), runtime.cipher, 6, {"address": "1 Race Lane"}, SYSTEM
        )
        worker = threading.Thread(target=consumer.consume, args=(message("customer.deleted", 6),))
        worker.start()
        worker.join(0.3)
        assert worker.is_alive()  # blocked by the create's lock on the replica entry
        request_transaction.commit()
    worker.join(15)
    assert not worker.is_alive()
    assert properties_of(session, 6) == [] and replica(session, 6) is True


def test_customer_deleted_removes_systems_equipment_and_history_too(api, session, consumer, customer_service):
    customer_service.customers[7] = 1
    consumer.consume(message("customer.created", 7, location_id=1))
    property_id = api.post("/api/v1/customers/7/properties", json={}).json["id"]
    kind_id = api.post("/api/v1/system-kinds", json={"name": "Panel"}).json["id"]
    assert api.post(f"/api/v1/properties/{property_id}/systems", json={"kind_id": kind_id}).status_code == 201
    assert api.post(f"/api/v1/properties/{property_id}/equipment", json={"item": "Keypad"}).status_code == 201
    consumer.consume(message("customer.deleted", 7))
    for model in (System, Equipment, PropertyHistory):
        assert session.scalar(select(func.count()).select_from(model)) == 0, model.__name__
    assert session.scalar(select(func.count()).select_from(SystemKind)) == 1  # the catalog stays


def test_a_create_after_the_customer_was_deleted_is_refused_before_the_event_arrives(
    api, session, consumer, customer_service, known
):
    """The DELETE answered 204, ``customer.deleted`` is still on its way: the replica says "live"."""
    consumer.consume(message("customer.created", 8, location_id=1))
    known(9)
    moving = api.post("/api/v1/customers/9/properties", json={}).json["id"]
    assert replica(session, 8) is False
    # the customer service has deleted customer 8 (answers 404), the property service has not heard yet

    response = api.post("/api/v1/customers/8/properties", json={"address": "1 Gone Street"})
    assert response.status_code == 422 and response.json["errors"] == {"customer_id": ["No such customer."]}
    transfer = api.post(f"/api/v1/properties/{moving}/transfer", json={"to_customer_id": 8})
    assert transfer.status_code == 422 and set(transfer.json["errors"]) == {"to_customer_id"}
    assert properties_of(session, 8) == []
    assert customer_service.asked == [9, 8, 8]


def test_a_create_the_customer_service_cannot_confirm_is_503_and_stores_nothing(api, session, known, customer_service):
    """Availability gives way to correctness: without the source, a deleted customer could not be told apart."""
    from vigil_shared.errors import UNAVAILABLE, Problem

    known(11)
    customer_service.failure = Problem(503, "down", type=UNAVAILABLE)
    response = api.post("/api/v1/customers/11/properties", json={"address": "1 Quiet Road"})
    assert response.status_code == 503 and response.headers["Content-Type"] == "application/problem+json"
    assert properties_of(session, 11) == []
    assert api.get("/api/v1/customers/11/properties").status_code == 200  # reads use the replica alone
