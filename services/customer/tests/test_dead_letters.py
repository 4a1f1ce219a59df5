"""An event the customer worker can never apply becomes a dead letter at once, and operators retry or discard it."""

import pytest
from helpers import create, customer
from kombu import Connection, Queue
from kombu.exceptions import OperationalError as BrokerOperationalError

from vigil_customer import accounts
from vigil_customer.tasks import event_consumer
from vigil_shared.messaging.contracts import handle_event_task
from vigil_shared.testing import identity_with, incoming_event

OPS = "/api/v1/ops/customer/dead-letters"


def property_created(customer_id: int, property_id: int = 41) -> dict:
    data = {"property_id": property_id, "customer_id": customer_id, "account_number": "ACC-41"}
    return incoming_event("property.created", data, source="property", request_id="req-dead")


@pytest.fixture
def broken_replica(monkeypatch):
    """The account-number replica has a bug: every upsert fails the same way."""
    calls = []

    def upsert(*args):
        calls.append(args)
        raise KeyError("account_number")

    monkeypatch.setattr(accounts, "upsert", upsert)
    return calls


def queued_messages(runtime) -> list[tuple[str, dict]]:
    received = []
    with Connection("memory://") as conn, conn.SimpleQueue(Queue(runtime.settings.queue_name())) as queue:
        while True:
            try:
                message = queue.get(timeout=0.2)
            except queue.Empty:
                return received
            received.append((message.headers["task"], message.payload[0][0]))
            message.ack()


def test_a_handler_error_is_a_dead_letter_after_one_attempt(api, runtime, broken_replica):
    owner = create(api, customer())
    runtime.celery.conf.task_always_eager = True  # retries, if any, run at once
    try:
        event_consumer(runtime).register_task(runtime.celery).apply(args=[property_created(owner["id"])])
    finally:
        runtime.celery.conf.task_always_eager = False
    assert len(broken_replica) == 1, "a programming error is not retried"
    listed = api.get(OPS)
    assert listed.status_code == 200 and listed.json["total"] == 1
    letter = listed.json["items"][0]
    assert letter["type"] == "property.created" and letter["version"] == 1 and letter["source"] == "property"
    assert (letter["error_class"], letter["error_message"], letter["attempts"]) == ("KeyError", "'account_number'", 1)
    assert letter["request_id"] == "req-dead" and letter["retried_at"] is None
    assert "message" not in letter and "data" not in letter, "the payload is never shown"
    assert api.get(f"{OPS}/{letter['event_id']}").json == letter


def test_operators_retry_a_dead_letter_once_its_cause_is_fixed(api, runtime, broken_replica, monkeypatch):
    owner = create(api, customer())
    consumer = event_consumer(runtime)
    event = property_created(owner["id"])
    assert consumer.consume(event) is False
    queued_messages(runtime)  # start from an empty queue
    retried = api.post(f"{OPS}/{event['id']}/retry")
    assert retried.status_code == 202 and retried.json["retried_at"] is not None
    assert queued_messages(runtime) == [(handle_event_task("customer"), event)], "sent to this service's worker"
    consumer.consume(event)  # still broken: back in the list, its attempts counted
    assert api.get(f"{OPS}/{event['id']}").json["attempts"] == 2
    monkeypatch.undo()  # the fix is deployed
    api.post(f"{OPS}/{event['id']}/retry")
    [(_, sent)] = queued_messages(runtime)
    assert event_consumer(runtime).consume(sent) is True
    assert api.get(f"{OPS}/{event['id']}").status_code == 404, "applied, it is no longer a dead letter"
    assert api.get("/api/v1/customers?q=ACC-41").json["total"] == 1


def test_a_retry_while_the_broker_is_down_sends_nothing_and_says_so(api, runtime, broken_replica, monkeypatch):
    owner = create(api, customer())
    event = property_created(owner["id"])
    event_consumer(runtime).consume(event)

    def broker_down(message):
        raise BrokerOperationalError("connection refused")

    monkeypatch.setattr(runtime, "deliver_to_self", broker_down)
    refused = api.post(f"{OPS}/{event['id']}/retry")
    assert refused.status_code == 503 and refused.headers["Retry-After"]
    assert api.get(f"{OPS}/{event['id']}").json["retried_at"] is None


def test_operators_discard_a_dead_letter_and_only_operators_see_them(api, runtime, broken_replica):
    owner = create(api, customer())
    event = property_created(owner["id"])
    event_consumer(runtime).consume(event)
    clerk = api.as_(identity_with("customers.view", "customers.modify", username="clerk"))
    for method, path in (
        ("get", OPS),
        ("get", f"{OPS}/{event['id']}"),
        ("post", f"{OPS}/{event['id']}/retry"),
        ("delete", f"{OPS}/{event['id']}"),
    ):
        assert getattr(clerk, method)(path).status_code == 403
    assert api.get(f"{OPS}?type=property.deleted").json["total"] == 0
    assert api.delete(f"{OPS}/{event['id']}").status_code == 204
    assert api.get(OPS).json["total"] == 0
    for method, path in (
        ("get", f"{OPS}/{event['id']}"),
        ("post", f"{OPS}/{event['id']}/retry"),
        ("delete", f"{OPS}/{event['id']}"),
    ):
        assert getattr(api, method)(path).status_code == 404
