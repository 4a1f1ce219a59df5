"""The property service as a participant of the archive saga: cancel future appointments stamped
with the operation, report each customer's step, refuse writes, and restore on request. Each event
applied twice changes nothing the second time."""

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from vigil_property.models import Appointment
from vigil_property.tasks import event_consumer
from vigil_shared.messaging.contracts import (
    CustomerArchiveRequested,
    CustomerCreated,
    CustomerUnarchiveRequested,
    new_event,
)

OPERATION = "customer-" + "a" * 32


@pytest.fixture
def consumer(runtime):
    return event_consumer(runtime)


def message(payload):
    return new_event(payload, source="customer").to_message()


def reports(runtime, session):
    outbox = runtime.messaging.OutboxEvent
    return [e.data for e in session.scalars(select(outbox).where(outbox.type == "operation.step_done"))]


def test_archive_cancels_future_visits_once_refuses_writes_and_unarchive_restores(
    api, session, runtime, consumer, customer_service
):
    customer_service.customers[3] = 1
    consumer.consume(message(CustomerCreated(customer_id=3, location_id=1)))
    site = api.post("/api/v1/customers/3/properties", json={"address": "1 Bay Street"}).json
    soon = datetime.now(UTC) + timedelta(days=3)

    def book(starts):
        body = {
            "type": "service",
            "starts_at": starts.isoformat(),
            "ends_at": (starts + timedelta(hours=1)).isoformat(),
        }
        created = api.post(f"/api/v1/properties/{site['id']}/appointments", json=body)
        assert created.status_code == 201, created.json
        return created.json["id"]

    future, past = book(soon), book(datetime.now(UTC) - timedelta(days=3))
    preview = api.get("/api/v1/archive-items/property", query_string={"customer_id": 3}).json
    assert [item["id"] for item in preview["items"]] == [future]

    archive = message(CustomerArchiveRequested(operation_id=OPERATION, customer_ids=[3]))
    assert consumer.consume(archive) is True
    assert consumer.consume(archive) is False  # the inbox: once
    session.expire_all()
    visits = {a.id: a for a in session.scalars(select(Appointment))}
    assert visits[future].status == "cancelled" and visits[future].cancelled_by_operation == OPERATION
    assert visits[past].status == "scheduled"
    [report] = reports(runtime, session)
    assert report["participant"] == "property" and report["target_id"] == "3"
    assert [item["id"] for item in report["result"]["cancelled"]] == [future]

    refused = api.patch(f"/api/v1/properties/{site['id']}", json={"address": "2 Bay Street"})
    assert refused.status_code == 409 and refused.json["type"] == "urn:vigil:problem:customer-archived"
    assert api.post("/api/v1/customers/3/properties", json={}).status_code == 409
    assert api.get(f"/api/v1/properties/{site['id']}").status_code == 200

    restore = CustomerUnarchiveRequested(
        operation_id="customer-" + "b" * 32, customer_ids=[3], restore_cancelled=True, archive_operation_ids=[OPERATION]
    )
    assert consumer.consume(message(restore)) is True
    session.expire_all()
    restored = session.get(Appointment, future)
    assert restored.status == "scheduled" and restored.cancelled_by_operation is None
    assert api.patch(f"/api/v1/properties/{site['id']}", json={"address": "2 Bay Street"}).status_code == 200
    assert len(reports(runtime, session)) == 2
