"""Webhooks for billing and credit events, through the gateway: an invoice issued, a card payment charged
at the sandbox processor and a credit check pulled from the sandbox bureau and applied reach a
subscriber signed, each with its record as the subscription's owner reads it (the billing method's last
four digits only, the check's score only with ``credit.view``); another office's owner, and an owner who
runs and applies checks without ``credit.view``, get nothing they may not read."""

from __future__ import annotations

import json
import random
import re
import uuid

import pytest
import requests
from conftest import customer_body, new_customer, unique_phone
from standardwebhooks.webhooks import Webhook
from test_e2e_at_rest import _scan_databases, _scan_files
from test_e2e_billing import settled, tokenize
from test_e2e_webhooks import Receiver

CARD = "4242424242424242"
TYPES = ["invoice.issued", "payment.received", "credit.check_applied"]


@pytest.fixture(scope="module")
def receiver():
    running = Receiver()
    yield running
    running.close()


def subscribe(owner, receiver, path: str) -> dict:
    response = owner.post("/api/v1/webhooks", json={"url": receiver.url(path), "event_types": TYPES})
    assert response.status_code == 201, response.text
    return response.json()


def deliveries(gateway, subscription: dict) -> list[dict]:
    return gateway.get(f"/api/v1/webhooks/{subscription['id']}/deliveries", params={"per_page": 100}).json()["items"]


def test_billing_and_credit_events_are_delivered_signed_as_each_owner_reads_them(
    stack, gateway, gateway_as, receiver, locations
):
    home, other = locations["home"], locations["other"]
    reader = gateway_as(["webhooks.manage", "billing.view", "credit.view"], [home])
    outsider = gateway_as(["webhooks.manage", "billing.view", "credit.view", "customers.view"], [other])
    blind = gateway_as(["webhooks.manage", "billing.view", "credit.create", "credit.apply"], [home])
    tag = uuid.uuid4().hex[:6]
    paths = {name: f"/{name}-{tag}" for name in ("reader", "outsider", "blind")}
    subscriptions = {
        "reader": subscribe(reader, receiver, paths["reader"]),
        "outsider": subscribe(outsider, receiver, paths["outsider"]),
        "blind": subscribe(blind, receiver, paths["blind"]),
    }

    ssn = f"{random.randint(100, 665)}-{random.randint(10, 99)}-0750"  # the sandbox bureau: a hit scoring 499
    made = gateway.post(
        "/api/v1/customers?allow_duplicates=true",
        json=customer_body(home, primary_phone=unique_phone(), ssn=ssn, birthdate="1975-04-12"),
    )
    assert made.status_code == 201, made.text
    customer = made.json()
    base = f"/api/v1/customers/{customer['id']}"
    bill = gateway.post(
        f"{base}/invoices", json={"lines": [{"description": "Monitoring", "unit_price": 3000}], "issue": True}
    )
    assert bill.status_code == 201, bill.text
    card = gateway.post(f"{base}/billing-methods", json={"token": tokenize(stack, CARD)})
    assert card.status_code == 201, card.text
    charge = gateway.post(
        f"{base}/payments", json={"method": "card", "amount": 3000, "billing_method_id": card.json()["id"]}
    )
    assert charge.status_code == 202, charge.text
    assert settled(gateway, charge.json()["id"])["status"] == "succeeded"
    pulled = gateway.post(f"{base}/credit-checks", json={"bureau": "equifax"})
    assert pulled.status_code == 202, pulled.text
    check = gateway.wait_for(
        lambda: (c := gateway.get(f"/api/v1/credit-checks/{pulled.json()['id']}").json())["status"] == "complete" and c,
        timeout=180,
        what="the credit pull",
    )
    applied = blind.post(f"/api/v1/credit-checks/{check['id']}/apply")  # applying is not reading the result
    assert applied.status_code == 200, applied.text
    assert applied.json()["score"] is None

    def mine(path: str) -> dict[str, tuple[dict, dict]]:
        found = {}
        for request in receiver.at(path):
            body = json.loads(request["body"])
            if body["data"]["customer_id"] == customer["id"]:
                found[body["type"]] = (request, body)
        return found

    received = gateway.wait_for(
        lambda: (got := mine(paths["reader"])) and len(got) == 3 and got, timeout=120, what="the three deliveries"
    )
    for request, body in received.values():
        verified = Webhook(subscriptions["reader"]["secret"]).verify(request["body"], request["headers"])
        assert verified == body and verified["id"] == request["headers"]["webhook-id"]
        assert ssn not in request["body"].decode() and ssn.replace("-", "") not in request["body"].decode()
    invoice = received["invoice.issued"][1]["data"]
    assert invoice["invoice"]["id"] == bill.json()["id"] and invoice["invoice"]["total"] == 3000
    payment = received["payment.received"][1]["data"]["payment"]
    assert payment["id"] == charge.json()["id"] and payment["status"] == "succeeded"
    assert payment["billing_method"]["last4"] == "4242" and payment["billing_method"]["brand"] == "visa"
    assert CARD not in received["payment.received"][0]["body"].decode()
    credit = received["credit.check_applied"][1]["data"]
    assert credit["score"] == 499 and credit["credit_check"]["grade"] == "F" and credit["credit_check"]["applied"]

    # the others' deliveries of the same events end as their owners may read the records (an administrator
    # sees every one; other tests' events are left aside)
    event_ids = {body["id"]: body["type"] for _, body in received.values()}

    def ended(name: str):
        items = [d for d in deliveries(gateway, subscriptions[name]) if d["event_id"] in event_ids]
        return items if len(items) == 3 and all(d["status"] != "pending" for d in items) else None

    outsiders = gateway.wait_for(lambda: ended("outsider"), what="the other office's deliveries to end")
    assert {d["status"] for d in outsiders} == {"skipped"} and mine(paths["outsider"]) == {}
    listed = outsider.get(f"/api/v1/webhooks/{subscriptions['outsider']['id']}/deliveries").json()["items"]
    assert not {d["event_id"] for d in listed} & set(event_ids)  # not even that they happened
    blinds = gateway.wait_for(lambda: ended("blind"), what="the credit-blind owner's deliveries to end")
    assert {(d["event_type"], d["status"]) for d in blinds} == {
        ("invoice.issued", "succeeded"),
        ("payment.received", "succeeded"),
        ("credit.check_applied", "skipped"),
    }
    sent_blind = mine(paths["blind"])
    assert sorted(sent_blind) == ["invoice.issued", "payment.received"]
    assert not any("score" in json.dumps(body) or "credit_check" in json.dumps(body) for _, body in sent_blind.values())
    own = blind.get(f"/api/v1/webhooks/{subscriptions['blind']['id']}/deliveries").json()["items"]
    assert {d["event_type"] for d in own if d["event_id"] in event_ids} == {"invoice.issued", "payment.received"}

    # at rest: the bodies sent are kept encrypted in the gateway's database (a marker only a body holds is
    # not there), and neither the card number nor the customer's SSN is in any database, log or file
    needles = {
        "card number": re.compile(CARD.encode()),
        "SSN": re.compile(re.escape(ssn).encode() + b"|" + ssn.replace("-", "").encode()),
        "payload body": re.compile(rb'"billing_method": ?\{'),
    }
    assert needles["payload body"].search(received["payment.received"][0]["body"])  # it finds a body
    found = _scan_databases(stack, needles) + _scan_files(
        stack, {k: v for k, v in needles.items() if k != "payload body"}
    )
    assert not found, "in plaintext at rest:\n" + "\n".join(found)


def feed_end(caller) -> str | None:
    """The cursor after every event the caller is listed now."""
    cursor = None
    while True:
        page = caller.get("/api/v1/events", params={"limit": 500} | ({"after": cursor} if cursor else {})).json()
        if not page["items"]:
            return page["next_cursor"] or cursor
        cursor = page["next_cursor"]


def test_a_customers_billing_events_follow_it_to_another_office(gateway, gateway_as, locations):
    """An invoice event names no location: the change feed lists it where its customer is now, where the
    billing API reads the invoice (a move takes the billing along), so the office the customer left no
    longer reads its totals there and the office it joined does."""
    home, other = locations["home"], locations["other"]
    left = gateway_as(["billing.view"], [home])
    joined = gateway_as(["billing.view"], [other])
    cursor = feed_end(gateway)
    customer = new_customer(gateway, home, "Moving", "Payer")
    bill = gateway.post(
        f"/api/v1/customers/{customer['id']}/invoices",
        json={"lines": [{"description": "Monitoring", "unit_price": 4321}], "issue": True},
    )
    assert bill.status_code == 201, bill.text

    def listed(caller) -> list[dict]:
        page = caller.get("/api/v1/events", params={"after": cursor, "types": "invoice.issued", "limit": 500})
        assert page.status_code == 200, page.text
        return [item for item in page.json()["items"] if item["data"]["invoice_id"] == bill.json()["id"]]

    [issued] = gateway.wait_for(lambda: listed(left), timeout=60, what="the invoice in the home office's feed")
    assert issued["data"]["total"] == 4321 and listed(joined) == []

    moved = gateway.patch(f"/api/v1/customers/{customer['id']}", json={"location_id": other})
    assert moved.status_code == 200, moved.text
    gateway.wait_for(
        lambda: joined.get(f"/api/v1/invoices/{bill.json()['id']}").status_code == 200,
        what="the billing service to move the invoice",
    )
    gateway.wait_for(lambda: listed(joined), timeout=60, what="the invoice in the other office's feed")
    assert listed(left) == []  # the office it left reads neither the invoice nor its total
    assert left.get(f"/api/v1/invoices/{bill.json()['id']}").status_code == 404


def test_a_decline_echoing_the_card_and_token_reaches_no_payment_feed_or_store(stack, gateway, gateway_as, locations):
    """A processor's failure code is its words, as its message is: a decline naming the card number and the
    token is stored masked, and so is the ``failure_code`` of ``payment.failed`` that the gateway keeps in
    its change feed (plaintext) and shows to billing viewers."""
    declining = "4000000000000002"
    customer = new_customer(gateway, locations["home"], "Echoed", "Decline")
    base = f"/api/v1/customers/{customer['id']}"
    token = tokenize(stack, declining)
    card = gateway.post(f"{base}/billing-methods", json={"token": token})
    assert card.status_code == 201, card.text
    control = requests.post(
        f"{stack.env['VIGIL_PROCESSOR_URL']}/sandbox/control", json={"echo_declines": 1}, timeout=10
    )
    assert control.status_code == 200 and control.json()["echo_declines"] == 1, control.text
    charge = gateway.post(
        f"{base}/payments", json={"method": "card", "amount": 1500, "billing_method_id": card.json()["id"]}
    )
    assert charge.status_code == 202, charge.text
    failed = settled(gateway, charge.json()["id"])
    assert failed["status"] == "failed" and failed["failure_code"].startswith("card_declined"), failed
    assert declining not in json.dumps(failed) and token not in json.dumps(failed), failed

    reader = gateway_as(["billing.view"], [locations["home"]])

    def in_feed():
        page = reader.get("/api/v1/events", params={"types": "payment.failed", "limit": 500})
        found = [i for i in page.json()["items"] if i["data"]["payment_id"] == charge.json()["id"]]
        return found[0] if found else None

    event = gateway.wait_for(in_feed, timeout=60, what="payment.failed in the change feed")
    assert event["data"]["failure_code"] == failed["failure_code"]
    needles = {"card number": re.compile(declining.encode()), "token": re.compile(re.escape(token).encode())}
    found = [  # the sandbox keeps its own answers (the echo included): it is the processor, not Vigil
        line for line in _scan_databases(stack, needles) + _scan_files(stack, needles) if "sandbox-" not in line
    ]
    assert not [line for line in found if "card number" in line], "in plaintext at rest:\n" + "\n".join(found)
    assert not [line for line in found if "token" in line and "billing" not in line], "\n".join(found)
