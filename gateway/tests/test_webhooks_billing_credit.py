"""Webhooks for invoice, payment and credit events: the record as the subscription's owner reads it at
delivery time, through the billing or credit service (stood in for here, with their rights and masks);
nothing for an owner who may not read it; nothing confidential in the stored body. The e2e suite runs the
whole loop (tests/test_e2e_webhooks_billing_credit.py)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from standardwebhooks.webhooks import Webhook
from test_webhooks import hook_owner, message, subscribe

from vigil_gateway import webhooks
from vigil_gateway.models import FeedEvent, WebhookBody, WebhookDelivery

CARD_NUMBER = "4242424242424242"


class Services:
    """Stands in for the billing and credit services (and the customer service's location look-up): the
    records of customer ``c`` (invoice, payment, billing method, credit check ``c``; PreChecks ``c`` and
    ``c + 50``) are at ``locations[c]``, each read with its view right there, as the services answer."""

    def __init__(self, locations: dict[int, int]):
        self.locations = locations
        self.reads: list[tuple[str, str]] = []
        self.method_answer: dict | None = None  # what the billing service answers for a billing method

    def get(self, service, path, identity, params=None):
        assert not any(p.startswith("confidential.") for p in identity.permissions)
        self.reads.append((service, path))
        parts = path.strip("/").split("/")  # api, v1, kind, id, …
        kind, record_id = parts[2], int(parts[3])
        if service == "customer":
            return {"id": record_id, "location_id": self.locations.get(record_id)}
        location = self.locations.get(record_id)
        right = "credit.view" if service == "credit" else "billing.view"
        if location is None or not identity.can(right, location):
            return None  # 404: unknown, or outside the caller's rights
        if kind == "invoices":
            return {"id": record_id, "customer_id": record_id, "location_id": location, "status": "issued"}
        if kind == "payments":
            return {
                "id": record_id,
                "customer_id": record_id,
                "location_id": location,
                "method": "card",
                "billing_method_id": record_id,
                "amount": 3000,
                "status": "succeeded",
            }
        if kind == "billing-methods":
            return self.method_answer or {
                "id": record_id,
                "customer_id": record_id,
                "location_id": location,
                "kind": "card",
                "brand": "visa",
                "last4": "4242",
                "exp_month": 12,
                "exp_year": 2030,
                "holder": "Dana Payer",
                "is_default": True,
            }
        if kind == "credit-checks":
            return {"id": record_id, "customer_id": record_id, "status": "complete", "score": 712, "grade": "B"}
        if kind == "customers" and parts[4] == "precheck":
            history = [{"id": record_id + 50, "status": "approved"}, {"id": record_id, "status": "declined"}]
            return {"latest": history[0], "history": history}
        raise AssertionError(f"unexpected read {service} {path}")


def event(event_type: str, customer_id: int, **data) -> dict:
    built = message(event_type, customer_id=customer_id, **data)
    del built["data"]["changed"], built["data"]["location_id"]
    built["source"] = event_type.split(".")[0].replace("invoice", "billing").replace("payment", "billing")
    return built


def invoice_issued(customer_id: int) -> dict:
    return event(
        "invoice.issued",
        customer_id,
        invoice_id=customer_id,
        number=1001,
        total=3246,
        currency="USD",
        due_date="2026-12-31",
    )


def payment_received(customer_id: int) -> dict:
    return event("payment.received", customer_id, payment_id=customer_id, amount=3000, currency="USD", method="card")


def check_applied(customer_id: int) -> dict:
    return event("credit.check_applied", customer_id, check_id=customer_id, score=712, tracking_number="TX-77")


def offices(client, auth) -> tuple[int, int]:
    home = client.post("/api/v1/locations", json={"name": f"Home {uuid.uuid4().hex[:6]}"}, headers=auth).json["id"]
    other = client.post("/api/v1/locations", json={"name": f"Other {uuid.uuid4().hex[:6]}"}, headers=auth).json["id"]
    return home, other


def deliver_all(runtime) -> list[str]:
    outcomes = [runtime.deliver(delivery_id, token) for delivery_id, token in runtime.sent]
    runtime.sent.clear()
    return outcomes


def bodies(receiver, secret: str) -> list[dict]:
    return [Webhook(secret).verify(r["body"], r["headers"]) for r in receiver.received]


def test_billing_and_credit_types_can_be_subscribed_to(local_app, client, auth, receiver):
    types = sorted(t for t in webhooks.EVENT_TYPES if t.split(".")[0] in ("invoice", "payment", "credit"))
    assert types == [
        "credit.check_applied",
        "credit.check_requested",
        "credit.precheck_requested",
        "invoice.issued",
        "invoice.voided",
        "payment.failed",
        "payment.received",
        "payment.refunded",
    ]
    created = subscribe(client, auth, receiver.url, event_types=types)
    assert created["event_types"] == types
    spec = client.get("/api/v1/openapi.json").json
    listed = json.dumps(spec["components"]["schemas"])
    assert "credit.precheck_requested" in listed and "operation.step_done" not in listed


def test_an_invoice_is_delivered_as_the_owner_reads_it_and_stored_encrypted(
    local_app,
    client,
    auth,
    runtime,
    receiver,
    db,
):
    home, _other = offices(client, auth)
    runtime.reader = Services({21: home})
    _user, headers, _role = hook_owner(client, auth, home, ("webhooks.manage", "billing.view"))
    created = subscribe(client, headers, receiver.url, event_types=["invoice.issued"])
    issued = invoice_issued(21)
    assert runtime.receive(issued) is True
    assert deliver_all(runtime) == ["succeeded"]
    [body] = bodies(receiver, created["secret"])
    assert body["id"] == issued["id"] and body["type"] == "invoice.issued"
    assert body["data"]["invoice_id"] == 21 and body["data"]["total"] == 3246
    assert body["data"]["invoice"] == {"id": 21, "customer_id": 21, "location_id": home, "status": "issued"}
    with db.transaction() as session:
        [delivery] = session.query(WebhookDelivery).all()
        kept = session.get(WebhookBody, delivery.body_id)  # the body as sent, kept compressed and encrypted
        assert kept is not None and b"3246" not in kept.sealed and issued["id"].encode() not in kept.sealed
        assert webhooks.open_body(runtime.cipher, kept.sealed) == receiver.received[0]["body"].decode()
        assert session.query(FeedEvent).one().location_id == home  # learnt from the customer service


def test_a_payment_carries_its_billing_method_as_the_billing_api_masks_it(
    local_app,
    client,
    auth,
    runtime,
    receiver,
):
    home, _other = offices(client, auth)
    services = runtime.reader = Services({22: home})
    created = subscribe(client, auth, receiver.url, event_types=["payment.received"])
    runtime.receive(payment_received(22))
    assert deliver_all(runtime) == ["succeeded"]
    [body] = bodies(receiver, created["secret"])
    method = body["data"]["payment"]["billing_method"]
    assert method["last4"] == "4242" and method["brand"] == "visa" and method["holder"] == "Dana Payer"
    assert ("billing", "/api/v1/billing-methods/22") in services.reads

    # whatever the billing service answers, only a method's shown fields go, and at most four digits
    services.method_answer = {"id": 22, "kind": "card", "last4": CARD_NUMBER, "number": CARD_NUMBER, "token": "tok_1"}
    runtime._cache.clear()
    runtime.receive(payment_received(22))
    assert deliver_all(runtime) == ["succeeded"]
    raw = receiver.received[-1]["body"].decode()
    assert CARD_NUMBER not in raw and "tok_1" not in raw
    assert json.loads(raw)["data"]["payment"]["billing_method"] == {"id": 22, "kind": "card", "last4": "4242"}


def test_a_removed_billing_method_leaves_the_payment_without_one(
    local_app,
    client,
    auth,
    runtime,
    receiver,
):
    home, _other = offices(client, auth)

    class Removed(Services):
        def get(self, service, path, identity, params=None):
            return None if "billing-methods" in path else super().get(service, path, identity, params)

    runtime.reader = Removed({23: home})
    created = subscribe(client, auth, receiver.url, event_types=["payment.received"])
    runtime.receive(payment_received(23))
    assert deliver_all(runtime) == ["succeeded"]
    [body] = bodies(receiver, created["secret"])
    assert body["data"]["payment"]["id"] == 23 and body["data"]["payment"]["billing_method"] is None


def test_a_credit_check_and_its_score_go_only_to_an_owner_holding_credit_view(
    local_app,
    client,
    auth,
    runtime,
    receiver,
    db,
    monkeypatch,
):
    """An owner who applies and runs checks without ``credit.view`` may not read a check (the Credit tab):
    no delivery, and neither the event's score nor its tracking number; nor does the event show in their
    deliveries, a replay or their change feed."""
    from vigil_gateway.api import webhooks as webhook_views

    monkeypatch.setattr(webhook_views, "FEED_SETTLE", timedelta(0))
    home, _other = offices(client, auth)
    runtime.reader = Services({24: home})
    _u, viewer, _r = hook_owner(client, auth, home, ("webhooks.manage", "customers.view", "credit.view"))
    _u, actor, _r = hook_owner(
        client, auth, home, ("webhooks.manage", "customers.view", "billing.view", "credit.create", "credit.apply")
    )
    sees = subscribe(client, viewer, receiver.url + "?viewer", event_types=["credit.check_applied"])
    blind = subscribe(client, actor, receiver.url + "?actor", event_types=["credit.check_applied"])
    since = datetime.now(UTC) - timedelta(minutes=1)
    applied = check_applied(24)
    runtime.receive(applied)
    assert sorted(deliver_all(runtime)) == ["skipped", "succeeded"]
    [request] = receiver.received
    body = Webhook(sees["secret"]).verify(request["body"], request["headers"])
    assert body["data"]["score"] == 712 and body["data"]["credit_check"]["grade"] == "B"
    for headers, subscription, shown in ((viewer, sees, 1), (actor, blind, 0)):
        path = f"/api/v1/webhooks/{subscription['id']}/deliveries"
        assert client.get(path, headers=headers).json["total"] == shown
        replayed = client.post(
            f"/api/v1/webhooks/{subscription['id']}/replay", json={"since": since.isoformat()}, headers=headers
        )
        assert replayed.json["replayed"] == shown
        feed = client.get("/api/v1/events", query_string={"types": "credit.check_applied"}, headers=headers).json
        assert [item["id"] for item in feed["items"]] == ([applied["id"]] if shown else [])
        if shown:
            assert feed["items"][0]["data"]["score"] == 712  # theirs to read


def test_another_offices_invoice_payment_and_check_are_not_delivered(
    local_app,
    client,
    auth,
    runtime,
    receiver,
):
    home, other = offices(client, auth)
    runtime.reader = Services({25: home, 26: other})
    everything = ("webhooks.manage", "customers.view", "billing.view", "credit.view")
    _u, headers, _r = hook_owner(client, auth, home, everything)
    created = subscribe(client, headers, receiver.url)  # every type
    for customer_id in (26, 25):
        runtime.receive(invoice_issued(customer_id))
        runtime.receive(payment_received(customer_id))
        runtime.receive(check_applied(customer_id))
        runtime.receive(event("credit.precheck_requested", customer_id, precheck_id=customer_id))
    assert deliver_all(runtime).count("succeeded") == 4
    sent = bodies(receiver, created["secret"])
    assert {body["data"]["customer_id"] for body in sent} == {25}
    assert sorted(body["type"] for body in sent) == [
        "credit.check_applied",
        "credit.precheck_requested",
        "invoice.issued",
        "payment.received",
    ]
    [precheck] = [body for body in sent if body["type"] == "credit.precheck_requested"]
    assert precheck["data"]["precheck"] == {"id": 25, "status": "declined"}  # the one named, not the latest
    assert client.get(f"/api/v1/webhooks/{created['id']}/deliveries", headers=headers).json["total"] == 4


def test_a_retry_after_the_owner_lost_billing_view_is_skipped(
    local_app,
    client,
    auth,
    runtime,
    receiver,
):
    home, _other = offices(client, auth)
    runtime.reader = Services({27: home})
    _u, headers, role = hook_owner(client, auth, home, ("webhooks.manage", "billing.view", "credit.view"))
    subscribe(client, headers, receiver.url, event_types=["invoice.issued", "credit.check_requested"])
    receiver.answers = [500, 500]
    runtime.receive(invoice_issued(27))
    runtime.receive(event("credit.check_requested", 27, check_id=27))
    pairs = list(runtime.sent)
    assert deliver_all(runtime) == ["retry", "retry"]
    changed = client.patch(f"/api/v1/roles/{role}", json={"permissions": ["webhooks.manage"]}, headers=auth)
    assert changed.status_code == 200, changed.json
    runtime._cache.clear()
    assert [runtime.deliver(delivery_id, 1) for delivery_id, _ in pairs] == ["skipped", "skipped"]
    assert len(receiver.received) == 2  # the first attempts only


def test_an_owner_without_billing_view_anywhere_gets_no_invoice_whatever_a_service_answers(
    local_app,
    client,
    auth,
    runtime,
    receiver,
):
    """The services decide who reads a record; the gateway sends no billing or credit record to an owner
    holding the view right nowhere, should a service answer one all the same."""
    home, _other = offices(client, auth)

    class Lenient(Services):
        def get(self, service, path, identity, params=None):
            if service == "customer":
                return super().get(service, path, identity, params)
            return {"id": 28, "score": 712, "total": 3246}

    runtime.reader = Lenient({28: home})
    _u, headers, _r = hook_owner(client, auth, home, ("webhooks.manage", "customers.view"))
    subscribe(client, headers, receiver.url)
    runtime.receive(invoice_issued(28))
    runtime.receive(check_applied(28))
    assert deliver_all(runtime) == ["skipped", "skipped"]
    assert receiver.received == []


@pytest.mark.parametrize(
    ("event_type", "data", "read"),
    [
        ("invoice.voided", {"invoice_id": 29, "number": 1001, "reason": "twice"}, ("billing", "/api/v1/invoices/29")),
        (
            "payment.failed",
            {"payment_id": 29, "amount": 3000, "currency": "USD", "failure_code": "card_declined"},
            ("billing", "/api/v1/payments/29"),
        ),
        (
            "payment.refunded",
            {"payment_id": 29, "amount": 3000, "currency": "USD"},
            ("billing", "/api/v1/payments/29"),
        ),
        ("credit.check_requested", {"check_id": 29}, ("credit", "/api/v1/credit-checks/29")),
    ],
)
def test_each_type_reads_its_record(local_app, client, auth, runtime, receiver, event_type, data, read):
    home, _other = offices(client, auth)
    services = runtime.reader = Services({29: home})
    created = subscribe(client, auth, receiver.url, event_types=[event_type])
    runtime.receive(event(event_type, 29, **data))
    assert deliver_all(runtime) == ["succeeded"]
    [body] = bodies(receiver, created["secret"])
    assert read in services.reads
    key = {"invoice": "invoice", "payment": "payment", "credit": "credit_check"}[event_type.split(".")[0]]
    assert body["data"][key]["id"] == 29


def test_an_api_key_subscription_delivers_with_the_keys_own_narrower_rights(
    local_app,
    client,
    auth,
    runtime,
    receiver,
):
    """A key made by an administrator for one office and billing only: another office's invoice is not
    sent, nor a credit check of its own office (the key holds no ``credit.view``, its maker does)."""
    home, other = offices(client, auth)
    runtime.reader = Services({30: home, 31: other})
    key = client.post(
        "/api/v1/api-keys",
        headers=auth,
        json={"name": f"crm-{uuid.uuid4().hex[:6]}", "permissions": ["webhooks.manage", "billing.view"]}
        | {"location_ids": [home]},
    )
    assert key.status_code == 201, key.json
    created = subscribe(client, {"X-API-Key": key.json["key"]}, receiver.url)
    for customer_id in (31, 30):
        runtime.receive(invoice_issued(customer_id))
        runtime.receive(check_applied(customer_id))
    assert sorted(deliver_all(runtime)) == ["skipped", "skipped", "skipped", "succeeded"]
    [body] = bodies(receiver, created["secret"])
    assert (body["type"], body["data"]["customer_id"]) == ("invoice.issued", 30)


def test_billing_and_credit_events_follow_their_customer_to_another_office(
    local_app,
    client,
    auth,
    runtime,
    receiver,
    monkeypatch,
):
    """A billing or credit event names no location: its services read its record at the customer's location
    *now* (a customer moving office moves its billing and its checks). The change feed, the deliveries and
    a replay follow the same rule: once the customer is in another office, its invoices' totals and its
    scores are no longer listed, counted or replayed to the office it left, but are to the one it is in.
    The same holds for an invoice the broker hands the gateway before the move that preceded it."""
    from vigil_gateway.api import webhooks as webhook_views

    monkeypatch.setattr(webhook_views, "FEED_SETTLE", timedelta(0))
    home, other = offices(client, auth)
    services = runtime.reader = Services({32: home})
    readers = ("webhooks.manage", "customers.view", "billing.view", "credit.view")
    _u, left, _r = hook_owner(client, auth, home, readers)
    _u, joined, _r = hook_owner(client, auth, other, readers)
    subscription = subscribe(client, left, receiver.url, event_types=["invoice.issued", "credit.check_applied"])
    since = datetime.now(UTC) - timedelta(minutes=1)
    created = message("customer.created", customer_id=32, location_id=home)
    del created["data"]["changed"]
    runtime.receive(created)
    issued, applied = invoice_issued(32), check_applied(32)
    runtime.receive(issued)
    runtime.receive(applied)
    runtime.sent.clear()

    def listed(headers) -> list[str]:
        feed = client.get(
            "/api/v1/events", query_string={"types": "invoice.issued,credit.check_applied"}, headers=headers
        )
        return [item["id"] for item in feed.json["items"] if item["data"]["customer_id"] == 32]

    assert listed(left) == [issued["id"], applied["id"]] and listed(joined) == []

    services.locations[32] = other  # the customer moves; the gateway hears of it after the billing events
    runtime.receive(message("customer.updated", customer_id=32, location_id=other, changed=["location_id"]))
    assert listed(left) == []  # neither the total nor the score of a customer no longer theirs
    assert listed(joined) == [issued["id"], applied["id"]]  # what the billing and credit APIs show them now
    path = f"/api/v1/webhooks/{subscription['id']}"
    assert client.get(f"{path}/deliveries", headers=left).json["total"] == 0
    assert client.post(f"{path}/replay", json={"since": since.isoformat()}, headers=left).json["replayed"] == 0
