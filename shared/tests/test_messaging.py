import threading
import uuid
from dataclasses import dataclass

import pytest
from conftest import Note, messaging
from kombu import Connection, Queue
from marshmallow import ValidationError
from sqlalchemy import func, select

from vigil_shared.config import Settings
from vigil_shared.crypto import FieldCipher, generate_key
from vigil_shared.messaging.celery_app import make_celery
from vigil_shared.messaging.contracts import (
    BATCHED_SUBSCRIBERS,
    CONTRACTS,
    SUBSCRIPTIONS,
    CustomerCreated,
    CustomerDeleted,
    CustomerUpdated,
    PropertyMonitoringChanged,
    PropertyTransferred,
    UnknownContract,
    contract,
    handle_event_task,
    handle_events_task,
    new_event,
    parse_event,
    subscribers,
)
from vigil_shared.messaging.outbox import EventConsumer, Outbox, OutboxRelay

SECRET = "s" * 40
CIPHER = FieldCipher([generate_key()], "index")


def settings(**overrides) -> Settings:
    return Settings.from_env(
        "customer",
        internal_secret=SECRET,
        broker_url="memory://",
        encryption_keys=("k",),
        blind_index_key="b",
        **overrides,
    )


def test_events_are_validated_against_their_contract():
    event = new_event(CustomerDeleted(customer_id=3), source="customer")
    assert parse_event(event.to_message()).data == {"customer_id": 3}
    with pytest.raises(ValidationError):
        new_event(CustomerDeleted(customer_id="three"), source="customer")
    with pytest.raises(UnknownContract):
        new_event(Note(text="not a contract"), source="customer")
    with pytest.raises(UnknownContract):
        parse_event(
            {
                "id": str(uuid.uuid4()),
                "type": "customer.exploded",
                "version": 1,
                "occurred_at": "2026-12-01T00:00:00Z",
                "data": {},
                "source": "x",
            }
        )
    with pytest.raises(ValidationError):
        parse_event({"id": "not-a-uuid", "type": "customer.deleted", "version": 1, "data": {}, "source": "x"})


def test_messages_already_in_queues_and_outboxes_still_parse():
    """The wire form did not change with the payload classes: an older producer's message (no optional
    fields) and a newer one's (a field this consumer does not know) both read as the same payload."""
    older = {
        "id": str(uuid.uuid4()),
        "type": "property.transferred",
        "version": 1,
        "source": "property",
        "occurred_at": "2026-11-22T14:03:00Z",
        "data": {"property_id": 1, "from_customer_id": 2, "to_customer_id": 3, "account_number": "A-1"},
    }
    event = parse_event(older)
    assert event.payload == PropertyTransferred(
        property_id=1, from_customer_id=2, to_customer_id=3, account_number="A-1"
    )
    assert (event.type, event.version, event.request_id) == ("property.transferred", 1, None)
    newer = older | {"data": older["data"] | {"added_later": True}}
    assert parse_event(newer).payload == event.payload
    assert event.to_message()["data"] == {
        "property_id": 1,
        "from_customer_id": 2,
        "to_customer_id": 3,
        "account_number": "A-1",
        "actor_id": None,
        "actor_name": None,
        "source": None,
        "reason": None,
    }
    assert new_event(CustomerCreated(customer_id=5), source="customer").data == {
        "customer_id": 5,
        "location_id": None,
        "kind": "customer",
        "precheck": False,
        "parent_id": None,
        "monitoring_company_id": None,  # optional fields added since, without a new version
        "restricted": None,
    }


def test_a_contract_is_a_dataclass_declared_once():
    class NotADataclass:
        pass

    @dataclass
    class Mutable:
        customer_id: int

    for not_frozen in (NotADataclass, Mutable):
        with pytest.raises(TypeError):
            contract("test.not_frozen", 1)(not_frozen)
    with pytest.raises(ValueError):
        contract("customer.deleted", 1)(PropertyTransferred)
    assert CONTRACTS[("customer.deleted", 1)].payload is CustomerDeleted


def test_every_subscription_names_a_known_contract():
    known = {event_type for event_type, _ in CONTRACTS}
    for service, types in SUBSCRIPTIONS.items():
        assert types <= known, service
    assert subscribers("customer.deleted") == ["billing", "credit", "gateway", "property"]


def test_outbox_rows_commit_or_roll_back_with_the_change(db):
    outbox = Outbox(messaging, "customer", "req-1")
    with db.transaction() as session:
        session.add(Note(text="kept"))
        outbox.add(session, CustomerCreated(customer_id=1))
    with pytest.raises(RuntimeError), db.transaction() as session:
        session.add(Note(text="lost"))
        outbox.add(session, CustomerCreated(customer_id=2))
        raise RuntimeError("the change fails")
    with db.new_session() as session:
        rows = session.scalars(select(messaging.OutboxEvent)).all()
    assert [r.data["customer_id"] for r in rows] == [1] and rows[0].request_id == "req-1"


def test_relay_publishes_to_each_subscriber_queue_once(db):
    prefix = f"t{uuid.uuid4().hex[:6]}"
    config = settings(queue_prefix=prefix)
    celery = make_celery(config)
    with db.transaction() as session:
        Outbox(messaging, "customer").add(session, CustomerDeleted(customer_id=9))
        Outbox(messaging, "customer").add(
            session,
            PropertyMonitoringChanged(property_id=1, customer_id=9, old_status="active", new_status="suspended"),
        )  # nobody subscribes
    relay = OutboxRelay(service="customer", db=db, models=messaging, celery=celery, queue_name=config.queue_name)
    assert relay.publish_pending() == 2
    assert relay.publish_pending() == 0, "published rows are not sent again"
    received = []
    with Connection("memory://") as conn:
        queue = Queue(f"{prefix}.property")
        with conn.SimpleQueue(queue) as simple:
            while True:
                try:
                    message = simple.get(timeout=0.5)
                except simple.Empty:
                    break
                received.append((message.headers["task"], message.payload[0][0]))
                message.ack()
    assert [(task, body["type"]) for task, body in received] == [(handle_event_task("property"), "customer.deleted")]
    assert parse_event(received[0][1]).data == {"customer_id": 9}


def test_relay_sends_a_batched_subscriber_one_task_per_cycle_in_order(db):
    """The gateway (``BATCHED_SUBSCRIBERS``) gets a cycle's events as one ``handle_events`` task, in
    the outbox's order; the others one task per event as before."""
    prefix = f"t{uuid.uuid4().hex[:6]}"
    config = settings(queue_prefix=prefix)
    with db.transaction() as session:
        for customer_id in (1, 2, 3):
            Outbox(messaging, "customer").add(session, CustomerDeleted(customer_id=customer_id))
    relay = OutboxRelay(
        service="customer", db=db, models=messaging, celery=make_celery(config), queue_name=config.queue_name
    )
    assert relay.publish_pending() == 3
    received: dict[str, list] = {"gateway": [], "property": []}
    with Connection("memory://") as conn:
        for name, got in received.items():
            with conn.SimpleQueue(Queue(f"{prefix}.{name}")) as simple:
                while True:
                    try:
                        sent = simple.get(timeout=0.5)
                    except simple.Empty:
                        break
                    got.append((sent.headers["task"], sent.payload[0][0]))
                    sent.ack()
    [(task, events)] = received["gateway"]
    assert task == handle_events_task("gateway") and "gateway" in BATCHED_SUBSCRIBERS
    assert [parse_event(event).data["customer_id"] for event in events] == [1, 2, 3]
    assert [task for task, _ in received["property"]] == [handle_event_task("property")] * 3


def _consumer(db) -> EventConsumer:
    consumer = EventConsumer(service="property", db=db, models=messaging, cipher=CIPHER)

    @consumer.on(CustomerDeleted)
    def record(session, event):
        session.add(Note(text=f"deleted {event.payload.customer_id}"))

    return consumer


def test_consumer_applies_an_event_once(db):
    consumer = _consumer(db)
    message = new_event(CustomerDeleted(customer_id=4), source="customer").to_message()
    assert consumer.consume(message) is True
    assert consumer.consume(message) is False
    assert consumer.consume(message) is False
    with db.new_session() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 1
        processed = session.get(messaging.ProcessedEvent, message["id"])
        assert processed.duplicates == 2


def test_concurrent_deliveries_of_one_event_apply_once(db):
    consumer = _consumer(db)
    message = new_event(CustomerDeleted(customer_id=5), source="customer").to_message()
    results, barrier = [], threading.Barrier(4)

    def deliver():
        barrier.wait()
        try:
            results.append(consumer.consume(message))
        except Exception as exc:  # SQLite may report the lock instead of the duplicate; either is a refusal
            results.append(type(exc).__name__)

    threads = [threading.Thread(target=deliver) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.count(True) == 1
    with db.new_session() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 1


def test_a_failing_handler_leaves_no_trace_so_a_retry_can_succeed(db):
    consumer = EventConsumer(service="property", db=db, models=messaging, cipher=CIPHER)
    attempts = []

    @consumer.on(CustomerDeleted)
    def flaky(session, event):
        session.add(Note(text="half"))
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("database went away")

    message = new_event(CustomerDeleted(customer_id=6), source="customer").to_message()
    with pytest.raises(ConnectionError):
        consumer.consume(message)
    assert consumer.consume(message) is True
    with db.new_session() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 1


def test_unknown_event_types_are_ignored(db):
    consumer = EventConsumer(service="property", db=db, models=messaging, cipher=CIPHER)
    assert (
        consumer.consume(new_event(CustomerUpdated(customer_id=1, changed=[]), source="customer").to_message()) is False
    )


def test_celery_app_is_configured_for_at_least_once_delivery():
    conf = make_celery(settings()).conf
    # Acknowledged only once done, so a prefetched message comes back if the worker dies holding it.
    assert conf.task_acks_late and conf.task_reject_on_worker_lost and 1 <= conf.worker_prefetch_multiplier <= 4
    assert conf.task_time_limit  # a stuck pooled task is replaced and its message redelivered
    assert conf.accept_content == ["json"] and conf.task_serializer == "json"
    assert conf.task_default_queue == "vigil.customer"


def test_the_relay_s_hourly_prune_also_ends_the_inbox_s_old_entries(db):
    """``processed_events`` (the inbox) was never pruned: a row per event per consumer, for ever (a soak
    of half an hour added thousands per service). An entry is kept ``INBOX_RETENTION``: far beyond any
    redelivery (the broker's within minutes, an operator's from the outbox, which keeps events
    ``OUTBOX_RETENTION``), then removed by the relay's hourly prune with the outbox's old rows."""
    from datetime import timedelta  # noqa: PLC0415

    from vigil_shared.db import utcnow  # noqa: PLC0415
    from vigil_shared.messaging.outbox import INBOX_RETENTION, OUTBOX_RETENTION  # noqa: PLC0415

    assert INBOX_RETENTION > OUTBOX_RETENTION
    consumer = _consumer(db)
    old, recent = (new_event(CustomerDeleted(customer_id=n), source="customer").to_message() for n in (5, 6))
    assert consumer.consume(old) and consumer.consume(recent)
    with db.transaction() as session:
        session.get(messaging.ProcessedEvent, old["id"]).processed_at = utcnow() - INBOX_RETENTION - timedelta(hours=1)
    relay = OutboxRelay(service="property", db=db, models=messaging, celery=None, queue_name=settings().queue_name)
    relay.prune()
    with db.new_session() as session:
        assert session.get(messaging.ProcessedEvent, old["id"]) is None
        assert session.get(messaging.ProcessedEvent, recent["id"]) is not None
