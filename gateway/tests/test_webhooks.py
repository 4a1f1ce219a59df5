"""Webhook subscriptions, signing, destination safety and the delivery state machine (the e2e suite
runs the whole loop through the worker)."""

from __future__ import annotations

import dataclasses
import json
import queue
import socket
import threading
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from standardwebhooks.webhooks import Webhook, WebhookVerificationError
from webhook_receiver import LOCAL, Reader, Receiver

from vigil_gateway import webhooks
from vigil_gateway.models import FeedEvent, WebhookAttempt, WebhookBody, WebhookDelivery, WebhookSubscription
from vigil_gateway.worker import WebhookRuntime
from vigil_shared.messaging.celery_app import make_celery
from vigil_shared.messaging.contracts import handle_event_task, handle_events_task


def message(event_type="customer.updated", **data) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": 1,
        "occurred_at": datetime.now(UTC).isoformat(),
        "data": {"customer_id": 1, "changed": ["city"], "location_id": 1} | data,
        "source": "customer",
        "request_id": "r1",
    }


def subscribe(client, auth, url, **extra):
    response = client.post("/api/v1/webhooks", json={"url": url, **extra}, headers=auth)
    assert response.status_code == 201, response.json
    return response.json


def test_the_secret_is_shown_once_and_stored_encrypted(local_app, client, auth, db, receiver):
    created = subscribe(client, auth, receiver.url, event_types=["customer.updated"])
    assert created["secret"].startswith("whsec_")
    assert "secret" not in client.get(f"/api/v1/webhooks/{created['id']}", headers=auth).json
    with db.transaction() as session:
        stored = session.get(WebhookSubscription, created["id"])
        assert created["secret"] not in stored.secret


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/x",  # loopback: not allowed by default
        "http://10.0.0.5/x",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://user:pw@example.com/x",
        "http://0.0.0.0/x",
    ],
)
def test_unsafe_destinations_are_refused(app, client, auth, url):
    app.extensions.pop("vigil_gateway_webhooks", None)
    response = client.post("/api/v1/webhooks", json={"url": url}, headers=auth)
    assert response.status_code == 422, response.json
    assert "url" in response.json["errors"]


def test_signatures_follow_standard_webhooks_and_rotation_signs_twice():
    old, new = webhooks.new_secret(), webhooks.new_secret()
    now = datetime.now(UTC)
    headers = webhooks.sign([new, old], "msg_1", now, '{"a":1}')
    assert Webhook(new).verify('{"a":1}', headers) == {"a": 1}
    assert Webhook(old).verify('{"a":1}', headers) == {"a": 1}
    with pytest.raises(WebhookVerificationError):
        Webhook(new).verify('{"a":2}', headers)
    stale = webhooks.sign([new], "msg_1", now - timedelta(minutes=6), '{"a":1}')
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(new, '{"a":1}', stale)
    with pytest.raises(WebhookVerificationError):
        webhooks.verify(new, '{"a":1}', headers | {"webhook-signature": "garbage"})


def test_keys_decoded_once_sign_exactly_as_the_reference_library():
    """The claim decodes each subscription's keys once and signs with them: the headers are the
    reference library's, byte for byte (secrets with and without padding, bodies with any text)."""
    moment = datetime(2026, 12, 6, 10, 30, 59, 999999, tzinfo=UTC)
    for secret in [webhooks.new_secret() for _ in range(5)] + ["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"]:
        for body in ('{"a":1}', '{"name":"Zoë \\u2603","n":[1,2]}', ""):
            mine = webhooks.sign_with_keys(webhooks.signing_keys([secret]), "msg_2", moment, body)
            assert mine["webhook-signature"] == Webhook(secret).sign("msg_2", moment, body)
            assert mine["webhook-timestamp"] == str(int(moment.timestamp())) == "1796553059"
            assert mine == webhooks.sign([secret], "msg_2", moment, body)


def test_a_long_relay_cycle_is_kept_in_groups_of_a_hundred_in_its_order(runtime, db, monkeypatch):
    """A thousand events waiting are not one transaction: the first hundred are due (their deliveries
    made) while the next are written."""
    from vigil_gateway import worker

    sizes: list[int] = []
    keep = runtime._keep_group
    monkeypatch.setattr(runtime, "_keep_group", lambda group: (sizes.append(len(group)), keep(group)))
    cycle = [message(customer_id=n) for n in range(2 * worker.MAX_INTAKE_GROUP + 30)]
    assert all(runtime.receive_many(cycle))
    assert sizes == [worker.MAX_INTAKE_GROUP, worker.MAX_INTAKE_GROUP, 30]
    with db.transaction() as session:
        order = [row.event_id for row in session.query(FeedEvent).order_by(FeedEvent.position)]
    assert order == [sent["id"] for sent in cycle]


def test_a_relay_cycle_is_kept_as_one_task_in_order_and_retried_whole(local_app, client, auth, runtime, receiver, db):
    """``handle_events``: a relay cycle's events in one task, kept in their order; a repeat is not
    delivered again, and a message that cannot be read fails the task only after the others are kept,
    so its retry finds them as repeats (at least once, no second delivery)."""
    subscribe(client, auth, receiver.url, event_types=["customer.updated"])
    first, second, third = message(), message(), message()
    assert runtime.receive(second) is True
    assert runtime.receive_many([first, second, third]) == [True, False, True]
    assert len(runtime.sent) == 3  # second's once, first's and third's
    fourth = message()
    with pytest.raises(Exception):  # noqa: B017, PT011 - what a malformed message raises is the parser's
        runtime.receive_many([fourth, {"id": "x", "type": "customer.updated"}])
    assert len(runtime.sent) == 4, "the readable event is kept though its task fails"
    assert runtime.receive_many([fourth]) == [False]  # the retry: a repeat
    with db.transaction() as session:
        order = [row.event_id for row in session.query(FeedEvent).order_by(FeedEvent.position)]
    assert order == [second["id"], first["id"], third["id"], fourth["id"]]
    with_broker = dataclasses.replace(runtime, celery=make_celery(runtime.settings.base))
    with_broker.register_tasks()
    assert {handle_event_task("gateway"), handle_events_task("gateway")} <= set(with_broker._broker().tasks)


def test_an_event_is_delivered_signed_with_masked_values(local_app, client, auth, runtime, receiver, db):
    created = subscribe(client, auth, receiver.url, event_types=["customer.updated"])
    event = message()
    assert runtime.receive(event) is True
    assert runtime.receive(event) is False  # a repeat: no second delivery
    [(delivery_id, token)] = runtime.sent
    assert runtime.deliver(delivery_id, token) == "succeeded"
    assert runtime.deliver(delivery_id, token) == "stale"  # a second copy of the task does nothing
    [request] = receiver.received
    body = Webhook(created["secret"]).verify(request["body"], request["headers"])
    assert body["id"] == event["id"] == request["headers"]["webhook-id"]
    assert body["data"]["changes"] == {"city": {"new": "Kanata"}}
    assert body["data"]["customer"]["ssn"] == "***-**-6789"
    with db.transaction() as session:
        [attempt] = session.query(WebhookAttempt).all()
        assert attempt.status_code == 200 and attempt.response_excerpt == "hello"
        kept = session.get(WebhookBody, session.get(WebhookDelivery, delivery_id).body_id)
        assert kept is not None and event["id"].encode() not in kept.sealed  # encrypted


def test_failures_retry_then_fail_and_redirects_are_not_followed(local_app, client, auth, runtime, receiver, db):
    created = subscribe(client, auth, receiver.url)
    receiver.answers = [302, 500, 500]
    runtime.receive(message())
    [(delivery_id, token)] = runtime.sent
    assert runtime.deliver(delivery_id, 0) == "retry"
    assert runtime.sweep() == 1
    assert runtime.deliver(delivery_id, 1) == "retry"
    runtime.sweep()
    assert runtime.deliver(delivery_id, 2) == "failed"  # the schedule (two retries) is spent
    assert len(receiver.received) == 3
    with db.transaction() as session:
        subscription = session.get(WebhookSubscription, created["id"])
        assert subscription.enabled and subscription.failing_since is not None
        assert [a.status_code for a in session.query(WebhookAttempt).order_by(WebhookAttempt.id)] == [302, 500, 500]


def test_410_disables_and_days_of_failure_disable(local_app, client, auth, runtime, receiver, db, settings):
    gone = subscribe(client, auth, receiver.url)
    receiver.answers = [410]
    runtime.receive(message())
    assert runtime.deliver(*runtime.sent[0]) == "gone"
    with db.transaction() as session:
        record = session.get(WebhookSubscription, gone["id"])
        assert not record.enabled and "410" in record.disabled_reason
        record.enabled, record.disabled_reason = True, None
        record.failing_since = datetime.now(UTC) - timedelta(days=6)
    receiver.answers = [500]
    runtime.receive(message())
    assert runtime.deliver(*runtime.sent[1]) == "failed"
    shown = client.get(f"/api/v1/webhooks/{gone['id']}", headers=auth).json
    assert shown["enabled"] is False and "failed since" in shown["disabled_reason"]


def test_a_slow_receiver_is_cut_off_by_the_timeout(local_app, client, auth, runtime, receiver):
    subscribe(client, auth, receiver.url)
    receiver.delay = 2.0
    runtime.receive(message())
    started = datetime.now(UTC)
    assert runtime.deliver(*runtime.sent[0]) == "retry"
    assert (datetime.now(UTC) - started).total_seconds() < 1.9


def test_replay_and_the_feed(local_app, client, auth, runtime, receiver, db, monkeypatch):
    from vigil_gateway.api import webhooks as webhook_views

    monkeypatch.setattr(webhook_views, "FEED_SETTLE", timedelta(0))
    created = subscribe(client, auth, receiver.url)
    location = client.post("/api/v1/locations", json={"name": "Feed office"}, headers=auth).json["id"]
    runtime.receive(message(location_id=location))
    runtime.receive(message(location_id=location + 1000))  # a location the admin does not know: not shown
    runtime.deliver(*runtime.sent[0])
    deliveries = client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=auth).json["items"]
    detail = client.get(f"/api/v1/webhooks/{created['id']}/deliveries/{deliveries[-1]['id']}", headers=auth).json
    assert [a["status_code"] for a in detail["attempt_log"]] == [200] and detail["status"] == "succeeded"
    replay = client.post(f"/api/v1/webhooks/{created['id']}/deliveries/{deliveries[0]['id']}/replay", headers=auth)
    assert replay.status_code == 202
    assert runtime.sweep() == 1
    since = client.post(
        f"/api/v1/webhooks/{created['id']}/replay",
        json={"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
        headers=auth,
    )
    assert since.status_code == 202 and since.json["replayed"] == 1  # not the event the feed does not show
    feed = client.get("/api/v1/events", headers=auth).json
    assert [item["type"] for item in feed["items"]] == ["customer.updated"]
    after = client.get(f"/api/v1/events?after={feed['next_cursor']}", headers=auth).json
    assert after["items"] == [] and after["next_cursor"] == feed["next_cursor"]
    with db.transaction() as session:
        assert session.query(FeedEvent).count() == 2
    assert json.loads(json.dumps(feed))  # plain JSON


def test_the_feed_lists_an_event_once_it_has_settled(local_app, client, auth, runtime, db):
    location = client.post("/api/v1/locations", json={"name": "Settle office"}, headers=auth).json["id"]
    runtime.receive(message(location_id=location))
    assert client.get("/api/v1/events", headers=auth).json["items"] == []  # may still have company in flight
    with db.transaction() as session:
        for row in session.query(FeedEvent):
            row.received_at = datetime.now(UTC) - timedelta(seconds=5)
    assert len(client.get("/api/v1/events", headers=auth).json["items"]) == 1


def test_a_deletion_that_arrives_before_the_creation_gets_its_location(runtime, db):
    runtime.reader = type("Gone", (), {"get": lambda self, *a, **k: None})()  # the customer is already deleted
    deleted = message("customer.deleted", customer_id=77)
    del deleted["data"]["changed"], deleted["data"]["location_id"]
    runtime.receive(deleted)
    runtime.receive(
        message("customer.created", customer_id=77, location_id=3) | {"data": {"customer_id": 77, "location_id": 3}}
    )
    with db.transaction() as session:
        assert {row.type: row.location_id for row in session.query(FeedEvent)} == {
            "customer.deleted": 3,
            "customer.created": 3,
        }


def test_the_feed_names_only_the_changed_fields_the_reader_may_see(local_app, client, auth, runtime, db):
    from conftest import bearer, sign_in

    location = client.post("/api/v1/locations", json={"name": "Sections office"}, headers=auth).json["id"]
    role = client.post("/api/v1/roles", headers=auth, json={"name": "Viewer", "permissions": ["customers.view"]})
    assert role.status_code == 201, role.json
    made = client.post(
        "/api/v1/users",
        headers=auth,
        json={
            "username": "vera",
            "password": "a-long-enough-password",
            "grants": [{"role_id": role.json["id"], "location_id": location}],
        },
    )
    assert made.status_code == 201, made.json
    viewer = bearer(sign_in(client, "vera", "a-long-enough-password"))
    runtime.receive(
        message(
            location_id=location,
            changed=["city", "sale_price"],
            restricted={"sale_price": "customers.sale_info.view"},
        )
    )
    with db.transaction() as session:
        for row in session.query(FeedEvent):
            row.received_at = datetime.now(UTC) - timedelta(seconds=5)
    [seen] = client.get("/api/v1/events", headers=viewer).json["items"]
    assert seen["data"]["changed"] == ["city"] and "restricted" not in seen["data"]
    assert "sale_price" not in json.dumps(seen)
    [full] = client.get("/api/v1/events", headers=auth).json["items"]
    assert full["data"]["changed"] == ["city", "sale_price"] and "restricted" not in full["data"]


def readers():
    """A customer viewer at location 2, and one who also sees the sale section there."""
    from vigil_shared.identity import Identity

    reader = Identity(subject="u1", username="u", permissions=frozenset(), locations={2: frozenset({"customers.view"})})
    seller = Identity(
        subject="u2",
        username="s",
        permissions=frozenset(),
        locations={2: frozenset({"customers.view", "customers.sale_info.view"})},
    )
    return reader, seller


def test_readable_data_leaves_out_what_the_reader_may_not_see():
    reader, seller = readers()
    data = {
        "customer_id": 1,
        "changed": ["city", "sale_price"],
        "restricted": {"sale_price": "customers.sale_info.view"},
    }
    assert webhooks.readable_data(data, reader, 2) == {"customer_id": 1, "changed": ["city"]}
    assert webhooks.readable_data(data, seller, 2)["changed"] == ["city", "sale_price"]
    assert webhooks.readable_data(data, seller, 3)["changed"] == ["city"]  # not at that location
    assert webhooks.readable_data({"customer_id": 1, "changed": ["city"]}, reader, 2)["changed"] == ["city"]


def test_a_value_an_event_carries_for_a_restricted_field_is_left_out_too():
    """``customer.created``/``updated`` carry the Monitored By id (for the property service): a reader
    without the sale section's view gets neither its name in ``changed`` nor its value."""
    reader, seller = readers()
    data = {
        "customer_id": 1,
        "changed": ["monitoring_company_id"],
        "monitoring_company_id": 4,
        "restricted": {"monitoring_company_id": "customers.sale_info.view"},
    }
    assert webhooks.readable_data(data, reader, 2) == {"customer_id": 1, "changed": []}
    assert webhooks.readable_data(data, seller, 2) == {
        "customer_id": 1,
        "changed": ["monitoring_company_id"],
        "monitoring_company_id": 4,
    }


def test_an_events_deliveries_go_together_and_a_slow_receiver_holds_none(
    local_app, client, auth, runtime, receiver, db
):
    slow = Receiver()
    try:
        fast = [subscribe(client, auth, receiver.url) for _ in range(3)]
        late = subscribe(client, auth, slow.url)
        slow.delay = 0.8
        event = message()
        runtime.receive(event)
        assert len(runtime.sent) == 4
        outcomes = runtime.deliver_many(runtime.sent, fast=0.3)  # returns before the slow one answers
        by_subscription = {}
        with db.transaction() as session:
            for delivery_id, _ in runtime.sent:
                by_subscription[session.get(WebhookDelivery, delivery_id).subscription_id] = delivery_id
        states = dict(zip([d for d, _ in runtime.sent], outcomes, strict=True))
        assert [states[by_subscription[s["id"]]] for s in fast] == ["succeeded"] * 3
        assert states[by_subscription[late["id"]]] == "sending"
        assert len(receiver.received) == 3
        runtime._senders.shutdown(wait=True)  # the slow answer comes, and is recorded
        with db.transaction() as session:
            delivery = session.get(WebhookDelivery, by_subscription[late["id"]])
            assert delivery.status == "succeeded"
            assert [a.status_code for a in session.query(WebhookAttempt).filter_by(delivery_id=delivery.id)] == [200]
        assert runtime.deliver_many(runtime.sent) == ["stale"] * 4  # a second copy of the task does nothing
    finally:
        slow.server.shutdown()
        slow.server.server_close()


def test_a_subscription_with_too_many_attempts_waiting_is_deferred_to_the_sweep(
    local_app, client, auth, runtime, receiver, db
):
    from vigil_gateway import worker

    created = subscribe(client, auth, receiver.url)
    runtime.receive(message())
    [(delivery_id, token)] = runtime.sent
    runtime._in_flight[created["id"]] = worker.IN_FLIGHT_LIMIT  # its receiver is still busy with others
    assert runtime.deliver(delivery_id, token) == "deferred"
    assert receiver.received == []
    with db.transaction() as session:
        delivery = session.get(WebhookDelivery, delivery_id)
        assert delivery.status == "pending" and delivery.attempts == 0 and delivery.next_attempt_at is not None
    runtime._in_flight[created["id"]] = 0
    with db.transaction() as session:
        session.get(WebhookDelivery, delivery_id).next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)
    assert runtime.sweep() == 1
    assert runtime.deliver(delivery_id, token) == "succeeded"


def test_the_sweep_takes_an_events_deliveries_together_when_many_are_due_at_once(
    local_app, client, auth, runtime, receiver, db
):
    """Deliveries due at the same moment (a group of events kept in one transaction) are taken in their
    events' order, each event's together, whatever order their rows were written in: the dispatchers
    count what the sweep hands them by events, so pieces of events made claims of two or three."""
    subscriptions = [subscribe(client, auth, receiver.url)["id"] for _ in range(3)]
    due = datetime.now(UTC) - timedelta(seconds=1)
    with db.transaction() as session:
        for subscription_id in subscriptions:  # rows written event B, event A, event B, …
            for event_id, position in (("event-b", 2), ("event-a", 1)):
                session.add(
                    WebhookDelivery(
                        subscription_id=subscription_id,
                        event_id=event_id,
                        event_type="customer.updated",
                        position=position,
                        next_attempt_at=due,
                    )
                )
    assert runtime.sweep(batch=3) == 3
    with db.transaction() as session:
        taken = {session.get(WebhookDelivery, delivery_id).event_id for delivery_id, _ in runtime.sent}
    assert taken == {"event-a"}


def test_a_burst_is_claimed_in_groups_not_an_event_each_time_a_lane_moves(runtime):
    """While more events wait than a claim's minimum, a dispatcher waits until the lanes have room for
    that many (a claim's statements, its owners' reads and its commit are shared by its group), but it
    takes a lone event at once; never more than the room."""
    from vigil_gateway import worker

    work: queue.SimpleQueue = queue.SimpleQueue()
    for n in range(20):
        work.put([(n * 10 + k, 0) for k in range(3)])  # an event's deliveries
    runtime._in_flight[1] = worker.IN_FLIGHT_LIMIT - worker.MIN_CLAIM_EVENTS + 2  # room for MIN - 2
    taken: list = []
    taker = threading.Thread(target=lambda: taken.append(runtime._take_work(work)))
    taker.start()
    taker.join(0.3)
    assert taker.is_alive() and not taken  # waiting for room for a group
    with runtime._room:
        runtime._in_flight[1] = worker.IN_FLIGHT_LIMIT - worker.MIN_CLAIM_EVENTS - 2  # the lane moved on
        runtime._room.notify_all()
    taker.join(5)
    [(batch, events)] = taken
    assert events == worker.MIN_CLAIM_EVENTS + 2 and len(batch) == 3 * events
    assert runtime._claiming == events
    runtime._claiming = 0
    lone: queue.SimpleQueue = queue.SimpleQueue()
    lone.put([(999, 0)])
    runtime._in_flight[1] = worker.IN_FLIGHT_LIMIT - 1  # room for one
    assert runtime._take_work(lone) == ([(999, 0)], 1)


def test_the_delivery_pool_sends_every_event_and_a_stuck_receiver_holds_none(local_app, client, auth, settings, db):
    """The worker's own pool (not the test's hand-run tasks): the events arrive from several threads and
    are kept in groups; three receivers get every delivery while a fourth does not answer at all."""
    from vigil_gateway import worker

    fast, stuck = Receiver(), Receiver()
    stuck.gate = threading.Event()
    hooks = dataclasses.replace(LOCAL, timeout=60.0)  # the stuck attempts stay open while the others go
    pool = WebhookRuntime(
        settings=settings, hooks=hooks, db=db, celery=None, cipher=settings.webhook_cipher(), reader=Reader()
    )  # type: ignore[arg-type]
    try:
        quick = [subscribe(client, auth, fast.url) for _ in range(3)]
        late = subscribe(client, auth, stuck.url)
        pool.start_delivery(2)
        events = [message() for _ in range(24)]
        threads = [threading.Thread(target=pool.receive, args=(event,)) for event in events]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert pool.receive(events[0]) is False  # a repeat: no second delivery
        wanted = {(s["id"], e["id"]) for s in quick for e in events}

        def all_fast_ones_recorded() -> bool:
            with db.transaction() as session:
                done = {
                    (d.subscription_id, d.event_id)
                    for d in session.query(WebhookDelivery).filter(WebhookDelivery.status == "succeeded")
                }
            return wanted <= done

        polls = 0
        while not all_fast_ones_recorded():  # while the stuck receiver still holds its first attempts
            assert polls < 600, "the other subscriptions' deliveries waited on the stuck receiver"
            polls += 1
            threading.Event().wait(0.05)
        assert len(fast.received) == len(wanted)  # each once
        assert len(stuck.received) <= worker.LANE_SENDERS  # it holds its own lane's senders, no more
        with db.transaction() as session:
            order = [e.event_id for e in session.query(FeedEvent).order_by(FeedEvent.position)]
            stuck_states = {d.status for d in session.query(WebhookDelivery).filter_by(subscription_id=late["id"])}
        assert sorted(order) == sorted(e["id"] for e in events)
        assert stuck_states == {"pending"}
    finally:
        stuck.gate.set()
        if pool._senders is not None:
            pool._senders.shutdown(wait=True)
        pool.stop_delivery(2)
        for running in (fast, stuck):
            running.server.shutdown()
            running.server.server_close()


# --- an attacker's pass: nothing outlives the rights it came from, nothing reaches inside -------------

OWNER_PASSWORD = "a webhook owner's long password"


def hook_owner(client, auth, location_id: int, permissions=("webhooks.manage", "customers.view")):
    """A signed-in user holding ``permissions`` at ``location_id``; (user, headers, role id)."""
    name = f"hooks-{uuid.uuid4().hex[:6]}"
    role = client.post("/api/v1/roles", headers=auth, json={"name": name, "permissions": list(permissions)})
    assert role.status_code == 201, role.json
    grants = [{"role_id": role.json["id"], "location_id": location_id}]
    user = client.post(
        "/api/v1/users", headers=auth, json={"username": name, "password": OWNER_PASSWORD, "grants": grants}
    )
    assert user.status_code == 201, user.json
    signed = client.post("/api/v1/auth/token", json={"username": name, "password": OWNER_PASSWORD})
    assert signed.status_code == 200, signed.json
    return user.json, {"Authorization": f"Bearer {signed.json['access_token']}"}, role.json["id"]


class LocatedReader:
    """Stands in for the customer service: customer 1 is at ``location``, readable with customers.view there."""

    def __init__(self, location: int):
        self.location = location

    def get(self, service, path, identity, params=None):
        if not identity.can("customers.view", self.location):
            return None
        return {"items": []} if path.endswith("/history") else {"id": 1, "city": "Kanata"}


class OfficesReader:
    """Stands in for the customer service: each customer at its location, readable with customers.view there."""

    def __init__(self, locations: dict[int, int]):
        self.locations = locations

    def get(self, service, path, identity, params=None):
        customer_id = int(path.split("/customers/")[1].split("/")[0])
        if not identity.can("customers.view", self.locations.get(customer_id)):
            return None
        return {"items": []} if path.endswith("/history") else {"id": customer_id, "city": "Kanata"}


def first_attempt_fails(client, auth, runtime, receiver, db):
    """An owner at a new location, subscribed; the first attempt of one event about it answered 500."""
    location = client.post("/api/v1/locations", json={"name": f"Hooks {uuid.uuid4().hex[:6]}"}, headers=auth)
    runtime.reader = LocatedReader(location.json["id"])
    user, headers, role = hook_owner(client, auth, location.json["id"])
    created = subscribe(client, headers, receiver.url, event_types=["customer.updated"])
    receiver.answers = [500]
    runtime.receive(message(location_id=location.json["id"]))
    [(delivery_id, token)] = runtime.sent
    assert runtime.deliver(delivery_id, token) == "retry"
    with db.transaction() as session:
        session.get(WebhookDelivery, delivery_id).next_attempt_at = datetime.now(UTC) - timedelta(seconds=1)
    return user, role, created, delivery_id


def test_a_retry_is_not_sent_once_the_owner_is_deactivated(local_app, client, auth, runtime, receiver, db):
    user, _role, created, delivery_id = first_attempt_fails(client, auth, runtime, receiver, db)
    assert client.patch(f"/api/v1/users/{user['id']}", json={"active": False}, headers=auth).status_code == 200
    assert runtime.deliver(delivery_id, 1) == "cancelled"
    assert len(receiver.received) == 1  # the payload kept from the first attempt was not sent again
    with db.transaction() as session:
        record = session.get(WebhookSubscription, created["id"])
        assert not record.enabled and "no longer" in record.disabled_reason


def test_a_subscription_stops_when_its_owner_loses_webhooks_manage(local_app, client, auth, runtime, receiver, db):
    _user, role, created, delivery_id = first_attempt_fails(client, auth, runtime, receiver, db)
    changed = client.patch(f"/api/v1/roles/{role}", json={"permissions": ["customers.view"]}, headers=auth)
    assert changed.status_code == 200, changed.json
    assert runtime.deliver(delivery_id, 1) == "cancelled"
    assert len(receiver.received) == 1
    with db.transaction() as session:
        assert not session.get(WebhookSubscription, created["id"]).enabled


def test_a_retry_after_the_owner_lost_the_location_is_skipped(local_app, client, auth, runtime, receiver, db):
    user, _role, _created, delivery_id = first_attempt_fails(client, auth, runtime, receiver, db)
    elsewhere = client.post("/api/v1/locations", json={"name": f"Else {uuid.uuid4().hex[:6]}"}, headers=auth)
    keeps = client.post(
        "/api/v1/roles",
        headers=auth,
        json={"name": f"keep-{uuid.uuid4().hex[:6]}", "permissions": ["webhooks.manage", "customers.view"]},
    ).json["id"]
    moved = client.patch(
        f"/api/v1/users/{user['id']}",
        json={"grants": [{"role_id": keeps, "location_id": elsewhere.json["id"]}]},
        headers=auth,
    )
    assert moved.status_code == 200, moved.json
    assert runtime.deliver(delivery_id, 1) == "skipped"
    assert len(receiver.received) == 1


def test_deliveries_show_no_event_the_owner_may_not_read(local_app, client, auth, runtime, receiver, db):
    """Every subscription wanting a type gets a delivery of each such event, skipped at send time when the
    owner may not read it. The owner's delivery list showed those too (event id, type, when), and a replay
    counted them: how many customers another office created, changed or deleted, and when (the feed
    shows them nothing)."""
    home = client.post("/api/v1/locations", json={"name": f"Own {uuid.uuid4().hex[:6]}"}, headers=auth).json["id"]
    other = client.post("/api/v1/locations", json={"name": f"Not {uuid.uuid4().hex[:6]}"}, headers=auth).json["id"]
    runtime.reader = OfficesReader({1: home, 2: other, 3: other, 4: other})
    _user, headers, _role = hook_owner(client, auth, home)
    created = subscribe(client, headers, receiver.url, event_types=["customer.updated"])
    since = datetime.now(UTC) - timedelta(minutes=1)
    runtime.receive(message(location_id=home, customer_id=1))
    hidden = [message(location_id=other, customer_id=2 + n) for n in range(3)]
    for event in hidden:
        runtime.receive(event)
    for delivery_id, token in list(runtime.sent):
        runtime.deliver(delivery_id, token)
    path = f"/api/v1/webhooks/{created['id']}/deliveries"
    listed = client.get(path, headers=headers).json
    assert {item["event_id"] for item in listed["items"]}.isdisjoint({event["id"] for event in hidden})
    assert listed["total"] == 1
    assert client.get(path, query_string={"status": "skipped"}, headers=headers).json["total"] == 0
    with db.transaction() as session:
        skipped = session.scalars(
            select(WebhookDelivery.id).where(
                WebhookDelivery.subscription_id == created["id"], WebhookDelivery.status == "skipped"
            )
        ).all()
    assert len(skipped) == 3
    for delivery_id in skipped:
        assert client.get(f"{path}/{delivery_id}", headers=headers).status_code == 404
        assert client.post(f"{path}/{delivery_id}/replay", headers=headers).status_code == 404
    replayed = client.post(
        f"/api/v1/webhooks/{created['id']}/replay", json={"since": since.isoformat()}, headers=headers
    )
    assert replayed.json["replayed"] == 1
    # an administrator sees every delivery
    assert client.get(path, headers=auth).json["total"] == 4


@pytest.mark.parametrize(
    "url",
    [
        "http://100.100.100.200/latest/meta-data",  # shared address space: a cloud's metadata service
        "http://100.64.0.1/x",
        "http://198.18.0.1/x",  # benchmarking
        "http://[2002:a9fe:a9fe::1]/x",  # 6to4 carrying 169.254.169.254
        "http://[2002:7f00:1::1]/x",  # 6to4 carrying 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/x",  # NAT64 carrying 169.254.169.254
        "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/x",  # Teredo
        "http://2852039166/x",  # 169.254.169.254 written as one decimal number
        "http://0x7f.1/x",
    ],
)
def test_addresses_that_are_not_public_are_refused(url):
    with pytest.raises(webhooks.UnsafeDestination):
        webhooks.resolve_destination(url, webhooks.WebhookSettings())


@pytest.mark.parametrize("url", ["http://93.184.216.34/x", "http://[2606:2800:220:1:248:1893:25c8:1946]/x"])
def test_public_addresses_are_accepted(url):
    assert webhooks.resolve_destination(url, webhooks.WebhookSettings()).address


def test_a_checked_destination_is_kept_a_few_seconds_then_checked_again(receiver, monkeypatch):
    """A process's connections keep a URL's check (resolved, judged) ``recheck`` seconds: its requests go
    to the address that was checked, and a name that moved to a forbidden address is refused once the
    check is made again."""
    port = receiver.server.server_address[1]
    real, answers, asked = socket.getaddrinfo, ["127.0.0.1"], []

    def getaddrinfo(host, *args, **kwargs):
        if host != "hooks.example":  # the connection itself, to the checked address
            return real(host, *args, **kwargs)
        asked.append(host)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (answers[0], args[0] if args else 0))]

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    connections = webhooks.Connections(recheck=60.0)
    url = f"http://hooks.example:{port}/hook"
    assert webhooks.post(url, "{}", {"webhook-id": "a"}, LOCAL, connections).ok
    answers[0] = "10.0.0.1"  # the name moves to a private address
    assert webhooks.post(url, "{}", {"webhook-id": "b"}, LOCAL, connections).ok  # the checked one, kept
    assert asked == ["hooks.example"]
    assert [r["headers"]["Host"] for r in receiver.received] == [f"hooks.example:{port}"] * 2
    connections.recheck = 0.0  # the check has aged
    refused = webhooks.post(url, "{}", {"webhook-id": "c"}, LOCAL, connections)
    assert refused.status_code is None and "private" in (refused.error or "")
    assert len(receiver.received) == 2 and asked == ["hooks.example"] * 2


# --- the delivery process: the pool in a process of its own, beside the intake -----------------------


def succeeded_pairs(db) -> set[tuple[int, str]]:
    """(subscription, event) of every delivery recorded as succeeded."""
    with db.transaction() as session:
        rows = session.query(WebhookDelivery.subscription_id, WebhookDelivery.event_id).filter_by(status="succeeded")
        return {(subscription_id, event_id) for subscription_id, event_id in rows}


def test_two_delivery_processes_never_send_the_same_attempt_twice(local_app, client, auth, settings, db):
    """The intake (``elsewhere``: deliveries made due now, none handed out) and two delivery pools taking
    them from the rows at once, as two ``vigil-gateway deliver`` processes would: every delivery is sent
    and recorded exactly once."""
    fast = Receiver()
    runtimes = [
        WebhookRuntime(
            settings=settings, hooks=LOCAL, db=db, celery=None, cipher=settings.webhook_cipher(), reader=Reader()
        )  # type: ignore[arg-type]
        for _ in range(3)
    ]
    intake, pools = runtimes[0], runtimes[1:]
    intake.elsewhere = True
    stopping = threading.Event()
    workers = [
        threading.Thread(target=pool.run_delivery_process, args=(stopping, 2, 0.01), daemon=True) for pool in pools
    ]
    try:
        subscriptions = [subscribe(client, auth, fast.url) for _ in range(3)]
        for worker_thread in workers:
            worker_thread.start()
        events = [message() for _ in range(30)]
        for event in events:
            assert intake.receive(event) is True
        wanted = {(s["id"], e["id"]) for s in subscriptions for e in events}
        polls = 0
        while not wanted <= succeeded_pairs(db):
            assert polls < 600, "the delivery processes did not send every delivery"
            polls += 1
            threading.Event().wait(0.05)
        # each (event, subscription) once, by one process or the other: the signature names the subscription
        sent = [(r["headers"]["webhook-id"], r["headers"]["webhook-signature"]) for r in fast.received]
        assert len(sent) == len(set(sent)) == len(wanted)
        with db.transaction() as session:
            counts = {d.attempts for d in session.query(WebhookDelivery)}
        assert counts == {1}  # (the attempt log is not counted: an earlier test's late answer may land in it)
    finally:
        stopping.set()
        for worker_thread in workers:
            worker_thread.join(10)
        for pool in pools:
            if pool._senders is not None:
                pool._senders.shutdown(wait=True)
        fast.server.shutdown()
        fast.server.server_close()


def test_the_same_attempt_claimed_by_two_pools_at_once_is_sent_once(local_app, client, auth, settings, db, receiver):
    """Two processes handed the same deliveries (a sweep's lease passed while one still held them): the
    claim lets one of them send each attempt; the other finds it stale."""
    pools = [
        WebhookRuntime(
            settings=settings, hooks=LOCAL, db=db, celery=None, cipher=settings.webhook_cipher(), reader=Reader()
        )  # type: ignore[arg-type]
        for _ in range(2)
    ]
    pools[0].elsewhere = True
    for _ in range(4):
        subscribe(client, auth, receiver.url)
    pools[0].receive(message())
    with db.transaction() as session:
        pairs = [(d.id, d.attempts) for d in session.query(WebhookDelivery)]
    outcomes: list[list[str]] = []
    start = threading.Barrier(2)

    def deliver(pool: WebhookRuntime) -> None:
        start.wait()
        outcomes.append(pool.deliver_many(pairs, fast=5.0))

    threads = [threading.Thread(target=deliver, args=(pool,)) for pool in pools]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for pool in pools:
        if pool._senders is not None:
            pool._senders.shutdown(wait=True)
    by_delivery = [sorted(pair) for pair in zip(*outcomes, strict=True)]
    assert by_delivery == [["stale", "succeeded"]] * len(pairs)
    assert len(receiver.received) == len(pairs)


def test_property_records_are_read_in_one_call_for_a_group_of_events(local_app, client, auth, runtime, receiver, db):
    """Ten property events for one owner: one read of the list filtered by id, not ten reads; a record
    the list leaves out is read on its own (and not sent when that read finds nothing either)."""

    class ListReader:
        def __init__(self):
            self.calls: list[tuple[str, dict | None]] = []

        def get(self, service, path, identity, params=None):
            assert not any(p.startswith("confidential.") for p in identity.permissions)
            self.calls.append((path, params))
            if path == "/api/v1/properties":
                return {"items": [{"id": i, "city": "Kanata"} for i in params["id"] if i != 5]}
            return None  # property 5 is not the owner's to read

    reader = ListReader()
    runtime.reader = reader
    subscribe(client, auth, receiver.url)
    for n in range(1, 11):
        runtime.receive(
            message("property.monitoring_changed", property_id=n, old_status="active", new_status="suspended")
        )
    outcomes = runtime.deliver_many(runtime.sent)
    assert sorted(outcomes) == ["skipped"] + ["succeeded"] * 9
    reads = [(path, params) for path, params in reader.calls if "/properties" in path]  # the intake asks for customers
    assert [path for path, _ in reads] == ["/api/v1/properties", "/api/v1/properties/5"]
    assert sorted(reads[0][1]["id"]) == list(range(1, 11))
    bodies = [json.loads(r["body"]) for r in receiver.received]
    assert sorted(b["data"]["property"]["id"] for b in bodies) == [1, 2, 3, 4, 6, 7, 8, 9, 10]


def test_array_literals_read_back_as_the_values_they_carry(db):
    """The claim, the recorder and the intake pass their arrays to PostgreSQL as one literal each: every
    id, code, status and body reads back exactly (quotes, backslashes, commas, braces, blanks, NULL)."""
    from sqlalchemy import text

    from vigil_gateway.worker import _pg_array

    with db.engine.connect() as conn:
        if conn.dialect.name != "postgresql":
            pytest.skip("the array statements are PostgreSQL's; SQLite runs Core statements")
        texts = ["a", "", "NULL", "x,y", "{z}", 'q"uote', "back\\slash", 'end\\"', "Zoë ☃", " sp ", None, "t\tn\n"]
        assert conn.execute(text("SELECT CAST(:a AS text[])"), {"a": _pg_array(texts)}).scalar() == texts
        numbers = [1, None, 2**40, 0, -3]
        assert conn.execute(text("SELECT CAST(:a AS bigint[])"), {"a": _pg_array(numbers)}).scalar() == numbers
        assert conn.execute(text("SELECT CAST(:a AS int[])"), {"a": _pg_array([])}).scalar() == []


@pytest.mark.parametrize("listed", [{}, {"items": None}, {"items": "x"}, {"accounts": []}, "x", 5, None, [1, "a"]])
def test_a_station_account_list_that_is_not_one_is_an_error_never_an_empty_station(listed):
    """A 200 without a list of accounts is malformed: read as no accounts, the drift report would call
    every Vigil account missing at the station."""
    from vigil_gateway.webhooks import station_accounts

    with pytest.raises(ValueError, match="account list"):
        station_accounts(listed)


def test_a_station_account_list_reads_both_shapes():
    from vigil_gateway.webhooks import station_accounts

    assert station_accounts([{"account_number": "1"}]) == [{"account_number": "1"}]
    assert station_accounts({"items": []}) == []


def _archive_of_two_delivered(client, auth, runtime, receiver, operation_id: str) -> dict:
    """``customer.archive_requested`` of customers 1 and 2 delivered to a new subscription: the body sent."""
    created = subscribe(client, auth, receiver.url, event_types=["customer.archive_requested"])
    event = message("customer.archive_requested", operation_id=operation_id, customer_ids=[1, 2])
    del event["data"]["customer_id"], event["data"]["changed"]
    assert runtime.receive(event) is True
    [(delivery_id, token)] = runtime.sent
    assert runtime.deliver(delivery_id, token) == "succeeded"
    return Webhook(created["secret"]).verify(receiver.received[0]["body"], receiver.received[0]["headers"])


def test_an_archive_of_several_customers_is_delivered_with_the_records_the_owner_reads(
    local_app, client, auth, runtime, receiver
):
    """``customer.archive_requested`` names ``customer_ids`` (a parent and its sub-customers), not one
    ``customer_id``: its payload carries the records the owner may read (a soak found it raising
    ``KeyError`` on every attempt, never sent)."""
    body = _archive_of_two_delivered(client, auth, runtime, receiver, "customer-op1")
    assert body["data"]["customer_ids"] == [1, 2] and len(body["data"]["customers"]) == 2
    assert body["data"]["customers"][0]["ssn"] == "***-**-6789"


def test_an_archive_names_no_customer_the_owner_may_not_read(local_app, client, auth, runtime, receiver):
    """A parent archived with a sub-customer of an office the owner does not hold: the payload carried
    that sub-customer's id in ``customer_ids`` all the same (an id of another office, and that it is a
    sub-customer of the parent: the parent link is a sale-information field)."""

    class OneOffice(Reader):
        def get(self, service, path, identity, params=None):
            return None if path == "/api/v1/customers/2" else super().get(service, path, identity, params)

    runtime.reader = OneOffice()
    body = _archive_of_two_delivered(client, auth, runtime, receiver, "customer-op2")
    assert body["data"]["customer_ids"] == [1] and len(body["data"]["customers"]) == 1


def test_an_event_whose_payload_cannot_be_built_holds_back_none_of_the_others(
    local_app, client, auth, runtime, receiver, db
):
    """One delivery whose body cannot be built (its record's service answers 500, say) is tried again
    later on its own; the other deliveries claimed with it go out now (a soak saw one such event fail
    every batch it was claimed with, again and again)."""

    class Failing(Reader):
        def get(self, service, path, identity, params=None):
            if path == "/api/v1/customers/13":
                raise RuntimeError("the customer service answered 500")
            return super().get(service, path, identity, params)

    runtime.reader = Failing()
    subscribe(client, auth, receiver.url, event_types=["customer.updated"])
    for customer_id in (12, 13, 14):
        runtime.receive(message(customer_id=customer_id))
    outcomes = runtime.deliver_many(runtime.sent)
    assert outcomes.count("succeeded") == 2 and len(receiver.received) == 2
    with db.transaction() as session:
        held = [d for d in session.query(WebhookDelivery).all() if d.status == "pending"]
        assert len(held) == 1 and held[0].attempts == 0
        assert held[0].next_attempt_at.replace(tzinfo=None) > datetime.now(UTC).replace(tzinfo=None)


def test_only_the_types_a_subscription_is_sent_can_be_subscribed_to(local_app, client, auth, runtime, receiver, db):
    """Operation events (the archive saga's internal reports) have no payload built for a subscriber:
    naming one is a 422 listing the types, and a subscription to every type makes no delivery for them
    (a soak saw thousands made and skipped, each row kept for 30 days). Invoice, payment and credit events
    are delivered (test_webhooks_billing_credit.py)."""
    refused = client.post(
        "/api/v1/webhooks", json={"url": receiver.url, "event_types": ["operation.step_done"]}, headers=auth
    )
    assert refused.status_code == 422 and "customer.updated" in json.dumps(refused.json), refused.json
    assert "invoice.issued" in json.dumps(refused.json) and "credit.check_applied" in json.dumps(refused.json)
    subscribe(client, auth, receiver.url)
    step = message(
        "operation.step_done", operation_id="op-1", participant="billing", target_type="customer", target_id="1"
    )
    del step["data"]["changed"], step["data"]["location_id"], step["data"]["customer_id"]
    step["source"] = "billing"
    assert runtime.receive(step) is True
    assert runtime.sent == []
    with db.transaction() as session:
        assert session.query(WebhookDelivery).count() == 0
    assert runtime.receive(message()) is True and len(runtime.sent) == 1
