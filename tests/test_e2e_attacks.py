"""An attacker's pass over billing, credit, webhooks, the change feed, central-station intake and
archiving, through the real stack: nobody gains what they do not hold, and nothing outlives the
rights it came from. Each test is a way in that was open once, or one that held and must keep
holding; the last one scans what the run left at rest for the values it planted.
"""

from __future__ import annotations

import contextlib
import json
import random
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests
from conftest import UNKNOWN_ID, Gateway, assert_hidden, assert_problem, customer_body, unique_phone, unknown_path
from standardwebhooks.webhooks import Webhook
from test_e2e_at_rest import _database_urls, _scan_databases, _scan_files
from test_e2e_webhooks import monitoring_company, signed_post

from vigil_shared.identity import service_identity, sign_identity
from vigil_shared.testing import identity_with

PLANTED_SSN = f"{random.randint(100, 665)}-{random.randint(10, 99)}-{random.randint(1000, 9999)}"
SECRETS_SHOWN: list[str] = []  # webhook and integration secrets the run was shown once


def new_customer(gateway, location_id: int, **fields) -> dict:
    body = customer_body(location_id, primary_phone=unique_phone(), last_name=f"Att{uuid.uuid4().hex[:6]}") | fields
    response = gateway.post("/api/v1/customers", params={"allow_duplicates": "true"}, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def tokenize(stack, number: str = "4242424242424242") -> str:
    body = {"number": number, "exp_month": 12, "exp_year": 2099, "holder": "Att Acker"}
    response = requests.post(f"{stack.env['VIGIL_PROCESSOR_URL']}/v1/tokens", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["token"]


# --- billing -------------------------------------------------------------------------------------


def test_a_refund_never_exceeds_what_was_paid_nor_reaches_another_office(gateway, gateway_as, locations):
    customer = new_customer(gateway, locations["home"])
    cashier = gateway_as(["billing.view", "payments.create"], [locations["home"]])
    outsider = gateway_as(["billing.view", "payments.create"], [locations["other"]])
    paid = cashier.post(f"/api/v1/customers/{customer['id']}/payments", json={"method": "cash", "amount": 1000})
    assert paid.status_code == 201, paid.text
    refund = f"/api/v1/payments/{paid.json()['id']}/refund"
    payment_id = paid.json()["id"]
    read = f"/api/v1/payments/{payment_id}"
    assert_hidden(outsider.get(read), outsider.get(unknown_path(read, payment_id)))
    assert_hidden(
        outsider.post(refund, json={"amount": 1}), outsider.post(unknown_path(refund, payment_id), json={"amount": 1})
    )
    for amount in (1001, 0, -5):
        assert_problem(cashier.post(refund, json={"amount": amount}), 422)
    assert cashier.post(refund, json={"amount": 600}).json()["amount_refunded"] == 600
    assert_problem(cashier.post(refund, json={"amount": 600}), 422)  # twice: only 400 is left
    assert cashier.post(refund, json={}).json()["amount_refunded"] == 1000  # the rest
    assert_problem(cashier.post(refund, json={"amount": 1}), 422)
    assert gateway.get(f"/api/v1/payments/{paid.json()['id']}").json()["amount_refunded"] == 1000


def test_two_refunds_at_once_refund_the_payment_once(gateway, locations):
    customer = new_customer(gateway, locations["home"])
    paid = gateway.post(f"/api/v1/customers/{customer['id']}/payments", json={"method": "cash", "amount": 700})
    assert paid.status_code == 201, paid.text
    answers: list[int] = []

    def refund():
        caller = Gateway(gateway.base_url)
        caller.http.headers.update(gateway.http.headers)
        answers.append(caller.post(f"/api/v1/payments/{paid.json()['id']}/refund", json={"amount": 700}).status_code)

    threads = [threading.Thread(target=refund) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert answers.count(200) == 1 and all(a in (200, 409, 422) for a in answers), answers
    after = gateway.get(f"/api/v1/payments/{paid.json()['id']}").json()
    assert after["amount_refunded"] == 700 and after["unallocated"] == 0


@contextlib.contextmanager
def processor_faults(stack, **faults):
    """The sandbox processor refusing refunds or losing its answers (``/sandbox/control``) for the block."""
    control = f"{stack.env['VIGIL_PROCESSOR_URL']}/sandbox/control"
    assert requests.post(control, json=faults, timeout=10).status_code == 200
    try:
        yield
    finally:
        requests.post(control, json=dict.fromkeys(faults, 0), timeout=10)


def card_payment(stack, gateway, customer: dict, amount: int) -> tuple[str, str]:
    """A succeeded card payment of ``customer``: its path, and the processor's charge id."""
    card = gateway.post(f"/api/v1/customers/{customer['id']}/billing-methods", json={"token": tokenize(stack)})
    assert card.status_code == 201, card.text
    charge = {"method": "card", "amount": amount, "billing_method_id": card.json()["id"]}
    paid = gateway.post(f"/api/v1/customers/{customer['id']}/payments", json=charge)
    assert paid.status_code == 202, paid.text
    path = f"/api/v1/payments/{paid.json()['id']}"
    gateway.wait_for(lambda: gateway.get(path).json()["status"] == "succeeded", what="the card charge")
    return path, paid.json()["id"]


def refunded_at_processor(stack, path: str) -> int:
    """What the processor itself refunded of the payment's charge (read from the sandbox's own books)."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_database_urls(stack)["billing"])
    try:
        with engine.connect() as conn:
            charge_id = conn.execute(
                text("SELECT processor_charge_id FROM payments WHERE id = :id"), {"id": int(path.rsplit("/", 1)[1])}
            ).scalar_one()
    finally:
        engine.dispose()
    answer = requests.get(f"{stack.env['VIGIL_PROCESSOR_URL']}/sandbox/charges/{charge_id}", timeout=10)
    assert answer.status_code == 200, answer.text
    return int(answer.json()["amount_refunded"])


def test_a_refund_refused_by_the_processor_can_be_asked_again(stack, gateway, locations):
    """The processor replays a refusal for its idempotency key: a new attempt after a refusal needs a new
    key, or it could never succeed."""
    path, _ = card_payment(stack, gateway, new_customer(gateway, locations["home"]), 900)
    with processor_faults(stack, refuse_refunds=1):
        refused = assert_problem(gateway.post(f"{path}/refund", json={"amount": 400}), 409)
        assert refused["code"] == "refund_refused"
    again = gateway.post(f"{path}/refund", json={"amount": 400})
    assert again.status_code == 200, again.text
    assert again.json()["amount_refunded"] == 400
    assert refunded_at_processor(stack, path) == 400


def test_a_refund_whose_answer_was_lost_never_refunds_twice(stack, gateway, locations):
    """A timeout leaves the outcome unknown (the processor did refund): asking again sends the same key,
    gets the first answer, and the money goes back once."""
    path, _ = card_payment(stack, gateway, new_customer(gateway, locations["home"]), 900)
    with processor_faults(stack, lose_refund_answers=3):  # every attempt the adapter makes
        assert_problem(gateway.post(f"{path}/refund", json={"amount": 600}), 503)
    assert gateway.get(path).json()["amount_refunded"] == 0
    again = gateway.post(f"{path}/refund", json={"amount": 600})
    assert again.status_code == 200, again.text
    assert again.json()["amount_refunded"] == 600
    assert refunded_at_processor(stack, path) == 600
    assert_problem(gateway.post(f"{path}/refund", json={"amount": 600}), 422)  # 300 is left, here and there


def test_a_lost_refund_asked_again_for_another_amount_never_refunds_twice(stack, gateway, locations):
    """A refund whose answer was lost may have been made. Asking for another amount sent the same key,
    which the processor refused as reused; that refusal ended the attempt, and asking for the first amount
    again sent a new key: the processor refunded it twice while Vigil booked it once. Until the lost
    attempt is resolved, only its amount may be asked for."""
    path, _ = card_payment(stack, gateway, new_customer(gateway, locations["home"]), 900)
    with processor_faults(stack, lose_refund_answers=3):  # every attempt the adapter makes
        assert_problem(gateway.post(f"{path}/refund", json={"amount": 400}), 503)
    assert refunded_at_processor(stack, path) == 400  # made; its answer never arrived
    other = gateway.post(f"{path}/refund", json={"amount": 300})
    again = gateway.post(f"{path}/refund", json={"amount": 400})
    assert refunded_at_processor(stack, path) == gateway.get(path).json()["amount_refunded"] == 400
    assert again.status_code == 200, again.text
    assert assert_problem(other, 409)["code"] == "refund_unresolved"


def test_another_customers_billing_method_cannot_be_charged(stack, gateway, gateway_as, locations):
    victim, payer = new_customer(gateway, locations["home"]), new_customer(gateway, locations["home"])
    card = gateway.post(f"/api/v1/customers/{victim['id']}/billing-methods", json={"token": tokenize(stack)})
    assert card.status_code == 201, card.text
    cashier = gateway_as(["billing.view", "payments.create"], [locations["home"]])
    charge = {"method": "card", "amount": 100, "billing_method_id": card.json()["id"]}
    assert_problem(cashier.post(f"/api/v1/customers/{payer['id']}/payments", json=charge), 422)
    scheduled = {"billing_method_id": card.json()["id"], "amount": 100, "due_date": "2099-01-01"}
    refused = assert_problem(cashier.post(f"/api/v1/customers/{payer['id']}/scheduled-payments", json=scheduled), 422)
    assert refused["errors"]["billing_method_id"]
    assert gateway.get(f"/api/v1/customers/{victim['id']}/payments").json()["total"] == 0
    # and a billing method is read, changed and removed only where its customer is
    elsewhere = gateway_as(["billing.view", "billing_methods.manage"], [locations["other"]])
    method = f"/api/v1/billing-methods/{card.json()['id']}"
    unknown = unknown_path(method, card.json()["id"])
    assert_hidden(elsewhere.get(method), elsewhere.get(unknown))
    assert_hidden(elsewhere.delete(method), elsewhere.delete(unknown))


def test_an_idempotency_key_never_returns_another_callers_reply(gateway, gateway_as, stack, locations):
    customer = new_customer(gateway, locations["home"])
    first = gateway_as(["billing.view", "payments.create"], [locations["home"]])
    second = signed_in(stack, gateway, ["billing.view", "payments.create"], locations["home"])
    key = {"Idempotency-Key": f"att-{uuid.uuid4().hex}"}
    body = {"method": "check", "amount": 250, "check_number": "1001"}
    mine = first.post(f"/api/v1/customers/{customer['id']}/payments", json=body, headers=key)
    theirs = second.post(f"/api/v1/customers/{customer['id']}/payments", json=body, headers=key)
    assert mine.status_code == theirs.status_code == 201, theirs.text
    assert theirs.json()["id"] != mine.json()["id"] and "Idempotent-Replayed" not in theirs.headers
    again = first.post(f"/api/v1/customers/{customer['id']}/payments", json=body, headers=key)
    assert again.json()["id"] == mine.json()["id"] and again.headers["Idempotent-Replayed"] == "true"


def signed_in(stack, gateway, permissions, location_id) -> Gateway:
    name, password = f"att-{uuid.uuid4().hex[:8]}", uuid.uuid4().hex
    role = gateway.post("/api/v1/roles", json={"name": name, "permissions": permissions}).json()["id"]
    grants = [{"role_id": role, "location_id": location_id}]
    user = gateway.post("/api/v1/users", json={"username": name, "password": password, "grants": grants})
    assert user.status_code == 201, user.text
    token = Gateway(stack.gateway_url).post("/api/v1/auth/token", json={"username": name, "password": password})
    caller = Gateway(stack.gateway_url, token.json()["access_token"])
    caller.user_id = user.json()["id"]  # type: ignore[attr-defined]
    return caller


def test_a_sub_customer_cannot_bill_a_customer_of_an_office_not_held(gateway, gateway_as, locations):
    """A sub-customer's invoices are owed by its parent. Linking one's own customer to another office's
    put an invoice on that office's account, and the refusals told which ids existed there."""
    victim, mine = new_customer(gateway, locations["other"]), new_customer(gateway, locations["home"])
    victims_sub = new_customer(gateway, locations["other"], parent_customer_id=victim["id"])
    rights = ["customers.view", "customers.modify", "customers.sale_info.view", "customers.sale_info.modify"]
    clerk = gateway_as([*rights, "billing.view", "billing.manage"], [locations["home"]])
    path = f"/api/v1/customers/{mine['id']}"
    unknown = assert_problem(clerk.patch(path, json={"parent_customer_id": UNKNOWN_ID}), 422)
    for parent in (victim, victims_sub):
        refused = assert_problem(clerk.patch(path, json={"parent_customer_id": parent["id"]}), 422)
        assert refused["errors"] == unknown["errors"]
    line = {"description": "Not yours", "quantity": 1, "unit_price": 99_999}
    invoice = clerk.post(f"{path}/invoices", json={"issue": True, "lines": [line]})
    assert invoice.status_code == 201, invoice.text
    assert invoice.json()["bill_to_customer_id"] == mine["id"]
    assert gateway.get(f"/api/v1/customers/{victim['id']}/transactions").json()["total"] == 0


# --- credit: the internal subject read -----------------------------------------------------------


def test_the_credit_subject_is_closed_to_all_but_the_credit_service(stack, gateway, locations):
    customer = new_customer(gateway, locations["home"], ssn=PLANTED_SSN, birthdate="1961-03-04")
    path = f"/api/v1/internal/customers/{customer['id']}/credit-subject"
    assert_problem(gateway.get(path), 404)  # the gateway never routes it, not even for an administrator
    url = stack.env["VIGIL_CUSTOMER_URL"] + path
    secret = stack.env["VIGIL_INTERNAL_SECRET"]
    both = {"confidential.ssn.view", "confidential.birthdate.view"}

    def read(token: str | None) -> requests.Response:
        headers = {"X-Vigil-Identity": token} if token else {}
        return requests.get(url, headers=headers, timeout=10)

    credit = service_identity("credit", both)
    assert read(None).status_code == 401
    assert read(sign_identity(credit, "x" * 48)).status_code == 401  # forged: another secret
    assert read(sign_identity(credit, secret, ttl_seconds=-60)).status_code == 401  # expired
    user = identity_with(*both, "customers.view", locations=(locations["home"],))
    for token in (sign_identity(user, secret), sign_identity(service_identity("billing", both), secret)):
        refused = read(token)
        assert refused.status_code == 403 and PLANTED_SSN not in refused.text
    answered = read(sign_identity(credit, secret))
    assert answered.status_code == 200 and answered.json()["ssn"] == PLANTED_SSN
    history = gateway.get(f"/api/v1/customers/{customer['id']}/history", params={"per_page": 100}).json()["items"]
    assert [h["actor_name"] for h in history if h["action"] == "credit_subject_read"] == ["credit"]


def test_a_caller_cannot_send_an_identity_or_binding_through_the_gateway(stack, gateway, gateway_as, locations):
    """The gateway passes on its own identity token (reused between calls) and the binding of this call's
    request id to it; a caller's ``X-Vigil-*`` headers never reach a service, even a genuine token of
    more rights (one that leaked) with its genuine binding."""
    from vigil_shared.identity import BINDING_HEADER, IDENTITY_HEADER, request_binding

    customer = new_customer(gateway, locations["home"])
    outsider = gateway_as(["customers.view", "customers.modify"], [locations["other"]])
    secret = stack.env["VIGIL_INTERNAL_SECRET"]
    leaked = sign_identity(service_identity("gateway", {"customers.view", "customers.modify"}), secret)
    rid = f"att-{uuid.uuid4().hex[:12]}"
    headers = {IDENTITY_HEADER: leaked, BINDING_HEADER: request_binding(leaked, rid, secret), "X-Request-ID": rid}
    path = f"/api/v1/customers/{customer['id']}"
    assert_hidden(outsider.get(path, headers=headers), outsider.get(unknown_path(path, customer["id"])))
    assert_hidden(
        outsider.patch(path, json={"city": "Aylmer"}, headers=headers),
        outsider.patch(unknown_path(path, customer["id"]), json={"city": "Aylmer"}),
    )
    assert gateway.get(path).json()["city"] != "Aylmer"


# --- webhooks ------------------------------------------------------------------------------------


class Receiver:
    def __init__(self):
        self.received: list[dict] = []
        self.status = 200
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received.append({"path": self.path, "body": body, "headers": dict(self.headers)})
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{path}"

    def at(self, path: str) -> list[dict]:
        return [r for r in self.received if r["path"] == path]


@pytest.fixture(scope="module")
def receiver():
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


def subscribe(caller, receiver, path: str, types=("customer.updated",)) -> dict:
    created = caller.post("/api/v1/webhooks", json={"url": receiver.url(path), "event_types": list(types)})
    assert created.status_code == 201, created.text
    SECRETS_SHOWN.append(created.json()["secret"])
    return created.json()


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/x",
        "http://169.254.169.254/latest/meta-data",
        "http://100.100.100.200/latest/meta-data",
        "http://[::ffff:169.254.169.254]/x",
        "http://[2002:a9fe:a9fe::1]/x",
        "http://2852039166/x",
        "http://0xa9fea9fe/x",
        "http://[fd00::1]/x",
    ],
)
def test_a_subscription_cannot_be_pointed_inside_after_it_was_made(gateway, receiver, url):
    subscription = subscribe(gateway, receiver, f"/inside-{uuid.uuid4().hex[:6]}")
    body = assert_problem(gateway.patch(f"/api/v1/webhooks/{subscription['id']}", json={"url": url}), 422)
    assert body["errors"]["url"]
    assert gateway.get(f"/api/v1/webhooks/{subscription['id']}").json()["url"] == subscription["url"]


def test_someone_elses_subscription_is_not_there(stack, gateway, receiver, locations):
    owner = signed_in(stack, gateway, ["webhooks.manage", "customers.view"], locations["home"])
    other = signed_in(stack, gateway, ["webhooks.manage", "customers.view"], locations["home"])
    path = f"/owned-{uuid.uuid4().hex[:6]}"
    subscription = subscribe(owner, receiver, path)
    customer = new_customer(gateway, locations["home"])
    assert gateway.patch(f"/api/v1/customers/{customer['id']}", json={"city": "Nepean"}).status_code == 200
    delivery = owner.wait_for(
        lambda: owner.get(f"/api/v1/webhooks/{subscription['id']}/deliveries").json()["items"],
        what="the owner's delivery",
    )[0]
    base = f"/api/v1/webhooks/{subscription['id']}"
    for method, path_, body in (
        ("GET", base, None),
        ("PATCH", base, {"url": receiver.url("/stolen")}),
        ("DELETE", base, None),
        ("POST", f"{base}/rotate-secret", {}),
        ("GET", f"{base}/deliveries", None),
        ("GET", f"{base}/deliveries/{delivery['id']}", None),
        ("POST", f"{base}/deliveries/{delivery['id']}/replay", None),
        ("POST", f"{base}/replay", {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()}),
    ):
        assert_problem(other.request(method, path_, json=body), 404)
    assert subscription["id"] not in [s["id"] for s in other.get("/api/v1/webhooks").json()["items"]]
    assert not receiver.at("/stolen")


def test_a_deactivated_owner_receives_no_more_retries(stack, gateway, receiver, locations):
    owner = signed_in(stack, gateway, ["webhooks.manage", "customers.view"], locations["home"])
    path = f"/leaver-{uuid.uuid4().hex[:6]}"
    subscription = subscribe(owner, receiver, path)
    receiver.status = 500  # every attempt fails: the delivery keeps being retried
    try:
        customer = new_customer(gateway, locations["home"])
        assert gateway.patch(f"/api/v1/customers/{customer['id']}", json={"city": "Orleans"}).status_code == 200
        gateway.wait_for(lambda: receiver.at(path), what="a first failed attempt")
        assert gateway.patch(f"/api/v1/users/{owner.user_id}", json={"active": False}).status_code == 200
        # the retries may all be spent already on a slow machine: an administrator's replay asks again
        # (409 once the subscription is disabled: the retry found the owner gone first)
        base = f"/api/v1/webhooks/{subscription['id']}"
        for delivery in gateway.get(f"{base}/deliveries").json()["items"]:
            assert gateway.post(f"{base}/deliveries/{delivery['id']}/replay").status_code in (202, 409)
        stopped = gateway.wait_for(
            lambda: (s := gateway.get(f"/api/v1/webhooks/{subscription['id']}").json())["enabled"] is False and s,
            what="the subscription disabled once its owner cannot sign in",
        )
        assert "no longer" in stopped["disabled_reason"]
        gateway.wait_for(
            lambda: (
                "cancelled"
                in [
                    d["status"]
                    for d in gateway.get(f"/api/v1/webhooks/{subscription['id']}/deliveries").json()["items"]
                ]
            ),
            what="the pending retry cancelled",
        )
        sent = len(receiver.at(path))
        assert gateway.get(f"/api/v1/webhooks/{subscription['id']}").json()["enabled"] is False
        assert len(receiver.at(path)) == sent
    finally:
        receiver.status = 200


def test_a_webhook_carries_no_ssn_and_nothing_from_another_office(stack, gateway, receiver, locations):
    owner = signed_in(stack, gateway, ["webhooks.manage", "customers.view", "history.view"], locations["home"])
    path = f"/masked-{uuid.uuid4().hex[:6]}"
    subscription = subscribe(owner, receiver, path)
    before = f"{random.randint(100, 665)}-{random.randint(10, 99)}-{random.randint(1000, 9999)}"
    here = new_customer(gateway, locations["home"], ssn=before)
    there = new_customer(gateway, locations["other"], ssn=before)
    for record in (there, here):  # the other office's change first: it must be skipped, not sent
        changed = gateway.patch(f"/api/v1/customers/{record['id']}", json={"ssn": PLANTED_SSN, "city": "Gloucester"})
        assert changed.status_code == 200, changed.text

    def arrived():
        return [json.loads(r["body"]) for r in receiver.at(path)]

    bodies = gateway.wait_for(
        lambda: (b := arrived()) and any(x["data"]["customer_id"] == here["id"] for x in b) and b,
        what="the home customer's update",
    )
    for request in receiver.at(path):
        Webhook(subscription["secret"]).verify(request["body"], request["headers"])
        raw = request["body"].decode()
        assert PLANTED_SSN not in raw and PLANTED_SSN.replace("-", "") not in raw and before not in raw
    assert there["id"] not in [b["data"]["customer_id"] for b in bodies]
    [mine] = [b for b in bodies if b["data"]["customer_id"] == here["id"]]
    assert mine["data"]["changes"]["ssn"]["new"] == f"***-**-{PLANTED_SSN[-4:]}"


# --- the change feed -----------------------------------------------------------------------------


@pytest.mark.parametrize("after", ["-1", "abc", "1e5", "9" * 19, "1 OR 1=1", "0x10"])
def test_a_tampered_feed_cursor_is_a_422(gateway, after):
    assert assert_problem(gateway.get("/api/v1/events", params={"after": after}), 422)["errors"]["after"]


def whole_feed(caller) -> list[dict]:
    items, cursor = [], None
    while True:
        page = caller.get("/api/v1/events", params={"limit": 500} | ({"after": cursor} if cursor else {}))
        assert page.status_code == 200, page.text
        items += page.json()["items"]
        if not page.json()["items"]:
            return items
        cursor = page.json()["next_cursor"]


def test_the_feed_shows_another_office_nothing(gateway, gateway_as, locations):
    hidden = new_customer(gateway, locations["home"])
    gateway.patch(f"/api/v1/customers/{hidden['id']}", json={"city": "Vanier"})
    gateway.wait_for(
        lambda: hidden["id"] in [i["data"].get("customer_id") for i in whole_feed(gateway)],
        what="the event in the administrator's feed",
    )
    outsider = gateway_as(["customers.view", "properties.view"], [locations["other"]])
    assert hidden["id"] not in [item["data"].get("customer_id") for item in whole_feed(outsider)]
    assert whole_feed(gateway_as(["notes.view"], [locations["home"]])) == []


def test_the_feed_gives_no_parent_to_a_reader_who_may_not_see_it(gateway, gateway_as, locations):
    """``parent_id`` rode in every customer event, whatever changed: a reader holding ``customers.view``
    but not ``customers.sale_info.view`` never sees the parent on the record, and saw it there."""
    parent = new_customer(gateway, locations["home"])
    sub = new_customer(gateway, locations["home"], parent_customer_id=parent["id"])
    assert gateway.patch(f"/api/v1/customers/{sub['id']}", json={"city": "Vanier"}).status_code == 200

    def events_of(caller) -> list[dict]:
        return [i["data"] for i in whole_feed(caller) if i["data"].get("customer_id") == sub["id"]]

    gateway.wait_for(lambda: len(events_of(gateway)) == 2, what="the sub-customer's events in the feed")
    assert all(data["parent_id"] == parent["id"] for data in events_of(gateway))
    reader = gateway_as(["customers.view"], [locations["home"]])
    assert "parent_customer_id" not in reader.get(f"/api/v1/customers/{sub['id']}").json()
    seen = events_of(reader)
    assert len(seen) == 2 and all("parent_id" not in data for data in seen), seen


# --- central stations ----------------------------------------------------------------------------


def test_a_station_cannot_be_impersonated(gateway, anonymous, locations):
    stations = []
    for _ in range(2):
        made = gateway.post("/api/v1/integrations", json={"name": f"Att Station {uuid.uuid4().hex[:6]}"})
        assert made.status_code == 201, made.text
        SECRETS_SHOWN.append(made.json()["secret"])
        stations.append(made.json())
    mine, theirs = stations
    customer = new_customer(gateway, locations["home"])
    account = f"ATT-{uuid.uuid4().hex[:8].upper()}"
    prop = gateway.post(
        f"/api/v1/customers/{customer['id']}/properties", json={"address": "1 Att", "account_number": account}
    )
    assert prop.status_code == 201, prop.text
    status = f"/api/v1/integrations/{theirs['id']}/account-status"
    message = {"account_number": account, "status": "cancelled"}
    assert_problem(signed_post(anonymous, status, mine["secret"], message), 401)  # another station's secret
    assert_problem(
        signed_post(anonymous, status, theirs["secret"], message, at=datetime.now(UTC) - timedelta(minutes=6)), 401
    )
    assert_problem(
        signed_post(anonymous, status, theirs["secret"], message, at=datetime.now(UTC) + timedelta(minutes=6)), 401
    )
    assert_problem(anonymous.post(status, json=message), 401)
    assert_problem(
        signed_post(anonymous, "/api/v1/integrations/2147483647/account-status", mine["secret"], message), 401
    )
    # the internal intake behind the gateway is not a way around the signature, even for an administrator
    forward = {
        "central_station": theirs["name"],
        "message_id": "m1",
        "account_number": account,
        "kind": "status",
        "status": "cancelled",
    }
    assert_problem(gateway.post("/api/v1/monitoring/messages", json=forward), 403)
    assert gateway.get(f"/api/v1/properties/{prop.json()['id']}").json()["monitoring_status"] != "cancelled"
    replayed = f"msg_{uuid.uuid4().hex}"
    assert signed_post(anonymous, status, theirs["secret"], message, message_id=replayed).status_code == 200
    assert_problem(signed_post(anonymous, status, theirs["secret"], message, message_id=replayed), 409)


def stations_of_their_own_companies(gateway, *names: str) -> list[dict]:
    """One central-station integration per name, each bound to a monitoring company of its own."""
    stations = []
    for name in names:
        company = monitoring_company(gateway, f"Att {name}")
        made = gateway.post(
            "/api/v1/integrations",
            json={"name": f"Att {name} {uuid.uuid4().hex[:6]}", "monitoring_company_id": company},
        )
        assert made.status_code == 201, made.text
        SECRETS_SHOWN.append(made.json()["secret"])
        stations.append(made.json())
    return stations


def test_a_station_reaches_only_the_properties_it_monitors(gateway, anonymous, locations):
    """A station (or whoever holds its secret) writes nothing into another station's properties: a message
    for an account it does not monitor answers exactly like an account no property has, and is kept
    unmatched for an operator; no status, signal or link reaches the property."""
    ours, theirs = stations_of_their_own_companies(gateway, "Ours", "Theirs")
    properties = {}
    for label in ("linked", "unlinked"):
        customer = new_customer(gateway, locations["home"], monitoring_company_id=ours["monitoring_company_id"])
        account = f"ATT-{uuid.uuid4().hex[:8].upper()}"
        made = gateway.post(f"/api/v1/customers/{customer['id']}/properties", json={"account_number": account})
        assert made.status_code == 201, made.text
        properties[label] = (made.json(), account)
    linked, linked_account = properties["linked"]
    first = signed_post(
        anonymous,
        f"/api/v1/integrations/{ours['id']}/signals",
        ours["secret"],
        {"account_number": linked_account, "type": "test"},
    )
    assert first.json() == {"status": "received", "matched": True}
    assert gateway.get(f"/api/v1/properties/{linked['id']}").json()["central_station"] == ours["name"]

    def send(kind: str, account: str):
        path = f"/api/v1/integrations/{theirs['id']}/{'signals' if kind == 'signal' else 'account-status'}"
        body = {"account_number": account} | (
            {"type": "alarm", "zone": "1"} if kind == "signal" else {"status": "cancelled"}
        )
        return signed_post(anonymous, path, theirs["secret"], body)

    nobody = f"NOBODY-{uuid.uuid4().hex[:8].upper()}"
    for kind in ("status", "signal"):
        unknown = send(kind, nobody)
        for _, account in properties.values():
            answer = send(kind, account)
            assert answer.status_code == unknown.status_code == 200
            assert answer.json() == unknown.json() == {"status": "received", "matched": False}
            assert answer.headers["Content-Type"] == unknown.headers["Content-Type"]
    for prop, _ in properties.values():
        now = gateway.get(f"/api/v1/properties/{prop['id']}").json()
        assert now["monitoring_status"] != "cancelled"
        assert now["central_station"] in (None, ours["name"])
        log = gateway.get(f"/api/v1/properties/{prop['id']}/signals").json()["items"]
        assert all(s["central_station"] == ours["name"] for s in log)
    assert gateway.get(f"/api/v1/properties/{properties['unlinked'][0]['id']}").json()["central_station"] is None
    held = gateway.get("/api/v1/monitoring/unmatched", params={"per_page": 100}).json()["items"]
    accounts = {s["account_number"] for s in held if s["central_station"] == theirs["name"]}
    assert {linked_account, properties["unlinked"][1], nobody} <= accounts


def test_a_station_does_not_follow_a_property_to_a_customer_another_company_monitors(gateway, anonymous, locations):
    """A property linked to a station by its first message was transferred with the link: the station kept
    writing statuses into a property whose customer another monitoring company monitors (and that
    customer's Monitored By was locked to the old station). The transfer unlinks it; the receiving
    customer's company's station links it again."""
    old, new = stations_of_their_own_companies(gateway, "Old", "New")
    seller = new_customer(gateway, locations["home"], monitoring_company_id=old["monitoring_company_id"])
    buyer = new_customer(gateway, locations["home"], monitoring_company_id=new["monitoring_company_id"])
    account = f"ATT-{uuid.uuid4().hex[:8].upper()}"
    made = gateway.post(f"/api/v1/customers/{seller['id']}/properties", json={"account_number": account})
    assert made.status_code == 201, made.text
    path = f"/api/v1/properties/{made.json()['id']}"

    def send(station: dict, kind: str):
        endpoint = f"/api/v1/integrations/{station['id']}/{'signals' if kind == 'signal' else 'account-status'}"
        body = {"account_number": account} | ({"type": "test"} if kind == "signal" else {"status": "cancelled"})
        return signed_post(anonymous, endpoint, station["secret"], body)

    assert send(old, "signal").json() == {"status": "received", "matched": True}
    assert gateway.get(path).json()["central_station"] == old["name"]
    moved = gateway.post(f"{path}/transfer", json={"to_customer_id": buyer["id"], "reason": "House sold"})
    assert moved.status_code == 200, moved.text
    assert send(old, "status").json() == {"status": "received", "matched": False}
    assert gateway.get(path).json()["monitoring_status"] != "cancelled"
    assert moved.json()["central_station"] is None
    assert send(new, "signal").json() == {"status": "received", "matched": True}
    assert gateway.get(path).json()["central_station"] == new["name"]


# --- the technician portal ------------------------------------------------------------------------


def test_a_technician_of_another_office_cannot_lock_an_account_out(gateway, gateway_as, locations):
    """Five wrong PINs lock an account for its own technicians too. From a technician of another office
    they counted: any holder of the portal right could lock every account whose number they knew, and the
    "locked" answer told them the account existed (an unknown one is never locked)."""
    customer = new_customer(gateway, locations["home"])
    account = f"ATT-{uuid.uuid4().hex[:8]}"
    site = {"account_number": account, "pin": "2468", "address": "1 Main St", "city": "Ottawa"}
    assert gateway.post(f"/api/v1/customers/{customer['id']}/properties", json=site).status_code == 201
    outsider = gateway_as(["tech_portal.use"], [locations["other"]])
    for _ in range(6):
        answer = assert_problem(
            outsider.post("/api/v1/tech/lookup", json={"account_number": account, "pin": "0000"}), 404
        )
        assert answer["type"] == "urn:vigil:problem:no-match"
    right = assert_problem(outsider.post("/api/v1/tech/lookup", json={"account_number": account, "pin": "2468"}), 404)
    assert right["type"] == "urn:vigil:problem:no-match"
    own = gateway_as(["tech_portal.use"], [locations["home"]])
    found = own.post("/api/v1/tech/lookup", json={"account_number": account, "pin": "2468"})
    assert found.status_code == 200, found.text


# --- input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_moment_utc_cannot_hold_is_a_422_everywhere(gateway, locations, moment):
    """A time whose offset puts it outside years 1 to 9999 in UTC parsed, then failed as it was stored or
    compared: a 500 from the gateway's own lists and keys and from every service."""
    customer = new_customer(gateway, locations["home"])
    site = gateway.post(f"/api/v1/customers/{customer['id']}/properties", json={"address": "1 Main St"})
    assert site.status_code == 201, site.text
    visit = {"type": "service", "starts_at": moment, "ends_at": "2026-12-01T10:00:00Z"}
    key = {"name": "att", "permissions": ["customers.view"], "location_ids": [locations["home"]], "expires_at": moment}
    for method, path, params, body in (
        ("GET", "/api/v1/audit", {"from": moment}, None),
        ("POST", "/api/v1/api-keys", None, key),
        ("GET", "/api/v1/customers", {"created_from": moment}, None),
        ("GET", f"/api/v1/customers/{customer['id']}/history", {"since": moment}, None),
        ("GET", "/api/v1/appointments", {"from": moment}, None),
        ("GET", f"/api/v1/properties/{site.json()['id']}/signals", {"since": moment}, None),
        ("POST", f"/api/v1/properties/{site.json()['id']}/appointments", None, visit),
    ):
        answer = assert_problem(gateway.request(method, path, params=params, json=body), 422)
        assert answer["errors"], answer


# --- locks and scope -------------------------------------------------------------------------------


@contextlib.contextmanager
def customer_row_held(stack, customer_id: int):
    """Another transaction holding the customer's row (an uncommitted write) in the customer database."""
    from sqlalchemy import create_engine, text

    engine = create_engine(_database_urls(stack)["customer"])
    try:
        with engine.connect() as conn:
            conn.execute(text("UPDATE customers SET version = version WHERE id = :id"), {"id": customer_id})
            try:
                yield
            finally:
                conn.rollback()
    finally:
        engine.dispose()


def test_an_outsiders_write_does_not_wait_behind_a_held_record(stack, gateway, gateway_as, locations):
    """The scope is checked before the row is locked: while another writer holds a record, a caller from
    another office gets the unknown-id 404 at once. Waiting on the lock would tell them it exists."""
    customer = new_customer(gateway, locations["home"])
    outsider = gateway_as(["customers.view", "customers.modify", "notes.modify"], [locations["other"]])
    path = f"/api/v1/customers/{customer['id']}"
    unknown = unknown_path(path, customer["id"])
    writes = [
        (lambda p: outsider.patch(p, json={"city": "Hull"})),
        (lambda p: outsider.post(f"{p}/notes", json={"body": "hello"})),
    ]
    for write in writes:
        with ThreadPoolExecutor(1) as pool, customer_row_held(stack, customer["id"]):
            answer = pool.submit(write, path).result(timeout=4)  # the lock wait alone would be 5 s
        assert_hidden(answer, write(unknown))
    assert gateway.patch(path, json={"city": "Hull"}).status_code == 200  # the record itself is fine


# --- archiving and operations ----------------------------------------------------------------------


def test_archiving_never_reaches_a_sub_customer_in_an_office_not_held(gateway, gateway_as, locations):
    parent = new_customer(gateway, locations["home"], last_name="AttParent")
    hidden_name = f"Hidden{uuid.uuid4().hex[:6]}"
    sub = new_customer(gateway, locations["other"], last_name=hidden_name, parent_customer_id=parent["id"])
    archivist = gateway_as(["customers.view", "customers.archive"], [locations["home"]])
    for method, path, body in (
        ("GET", f"/api/v1/customers/{parent['id']}/archive-targets", None),
        ("GET", f"/api/v1/customers/{parent['id']}/archive-preview", None),
        ("POST", f"/api/v1/customers/{parent['id']}/archive", {"confirm": True}),
    ):
        refused = archivist.request(method, path, json=body)
        assert_problem(refused, 403)
        assert hidden_name not in refused.text
    assert gateway.get(f"/api/v1/customers/{sub['id']}").json()["archived_at"] is None
    assert gateway.get(f"/api/v1/customers/{parent['id']}").json()["archived_at"] is None


def test_another_users_operation_is_not_there(gateway, gateway_as, locations):
    customer = new_customer(gateway, locations["home"])
    started = gateway.post(f"/api/v1/customers/{customer['id']}/archive", json={"confirm": True})
    assert started.status_code == 202, started.text
    snoop = gateway_as(["customers.view", "customers.archive"], [locations["home"]])
    assert gateway.get(f"/api/v1/operations/{started.json()['id']}").status_code == 200
    assert_problem(snoop.get(f"/api/v1/operations/{started.json()['id']}"), 404)
    assert started.json()["id"] not in [o["id"] for o in snoop.get("/api/v1/operations").json()["items"]]


# --- what the run left at rest ---------------------------------------------------------------------


@pytest.mark.run_last(1)
def test_no_planted_ssn_or_shown_secret_at_rest(stack, gateway):
    """Everything above planted an SSN (customers, a credit-subject read, webhooks) and was shown
    secrets once (webhooks, integrations): none of them sits in plaintext in a table or a file."""
    import re

    assert SECRETS_SHOWN, "the tests above ran"
    digits = PLANTED_SSN.replace("-", "")
    needles = {"ssn": re.compile(f"{re.escape(PLANTED_SSN)}|{digits}".encode())}
    for index, secret in enumerate(SECRETS_SHOWN):
        needles[f"secret #{index}"] = re.compile(re.escape(secret.removeprefix("whsec_")).encode())
    found = _scan_databases(stack, needles) + _scan_files(stack, needles)
    assert not found, "planted values found in plaintext:\n" + "\n".join(found)
