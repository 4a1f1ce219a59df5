"""Another attacker's pass through the real stack: each test is a way in that was open, now closed.

- a doubled slash answered by Werkzeug's HTML redirect, naming the internal address of the service;
- an ``Idempotency-Key`` replay showing a value unmasked after the caller lost the right to read it;
- an operator (``ops.manage`` alone) running the billing due job for a later day: cards charged early.
"""

from __future__ import annotations

import random
import secrets
import time
import uuid

import pytest
import requests
from conftest import Gateway, assert_problem, customer_body, unique_phone

SSN = f"{random.randint(100, 665)}-{random.randint(10, 99)}-{random.randint(1000, 9999)}"


@pytest.mark.parametrize(
    "path",
    ["/api/v1/customers//{id}", "/api/v1//customers/{id}", "/api/v1//users", "/api/v1/customers/{id}//billing"],
)
def test_a_doubled_slash_is_a_404_problem_never_a_redirect_to_the_service(stack, gateway, locations, path):
    """The service's 308 passed through the gateway with ``Location: http://127.0.0.1:<service port>/…``
    and an HTML body: the caller learnt where the services listen."""
    customer = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(locations["home"], primary_phone=unique_phone()),
    ).json()
    response = gateway.get(path.format(id=customer["id"]), allow_redirects=False)
    assert_problem(response, 404)
    assert "Location" not in response.headers
    for name in ("CUSTOMER", "PROPERTY", "BILLING", "CREDIT"):
        assert f":{stack.env[f'VIGIL_{name}_PORT']}" not in response.text


def test_a_replayed_reply_never_outlives_the_right_that_unmasked_it(stack, gateway, locations):
    """A copy made with ``Idempotency-Key`` showed the SSN to a clerk allowed to read it. Once that right
    was taken away, the clerk's reads showed it masked, yet replaying the copy showed it whole."""
    original = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(
            locations["home"], primary_phone=unique_phone(), ssn=SSN, last_name=f"Replay{uuid.uuid4().hex[:8]}"
        ),
    ).json()
    permissions = ["customers.view", "customers.create", "confidential.ssn.view"]
    role = gateway.post("/api/v1/roles", json={"name": f"att-{uuid.uuid4().hex[:8]}", "permissions": permissions})
    assert role.status_code == 201, role.text
    name, password = f"att-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    grants = [{"role_id": role.json()["id"], "location_id": locations["home"]}]
    assert gateway.post("/api/v1/users", json={"username": name, "password": password, "grants": grants}).ok
    clerk = Gateway(stack.gateway_url, credentials={"username": name, "password": password})
    key = {"Idempotency-Key": f"att-{uuid.uuid4().hex}"}
    copy = clerk.post(f"/api/v1/customers/{original['id']}/duplicate", json={}, headers=key)
    assert copy.status_code == 201, copy.text
    assert copy.json()["ssn"] == SSN
    role_path = f"/api/v1/roles/{role.json()['id']}"
    etag = gateway.get(role_path).headers["ETag"]
    narrowed = gateway.patch(
        role_path, json={"permissions": ["customers.view", "customers.create"]}, headers={"If-Match": etag}
    )
    assert narrowed.status_code == 200, narrowed.text
    assert clerk.get(f"/api/v1/customers/{copy.json()['id']}").json()["ssn"] != SSN
    replayed = clerk.post(f"/api/v1/customers/{original['id']}/duplicate", json={}, headers=key)
    assert_problem(replayed, 409)
    assert SSN not in replayed.text and SSN.replace("-", "") not in replayed.text
    # and nothing was made again
    found = gateway.get("/api/v1/customers", params={"q": original["last_name"], "per_page": 100}).json()
    assert [c["id"] for c in found["items"] if c["id"] != original["id"]] == [copy.json()["id"]]


def test_an_operator_cannot_run_the_due_job_for_a_day_still_ahead(stack, gateway, locations):
    """``POST /billing/run-due`` needs ``ops.manage`` only. Asked for 2099, the worker charged a scheduled
    payment due then, at once, for an operator who may not even read the customer's payments."""
    customer = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(locations["home"], primary_phone=unique_phone()),
    ).json()
    card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "holder": "Early Bird"}
    token = requests.post(f"{stack.env['VIGIL_PROCESSOR_URL']}/v1/tokens", json=card, timeout=10).json()["token"]
    method = gateway.post(f"/api/v1/customers/{customer['id']}/billing-methods", json={"token": token}).json()
    scheduled = gateway.post(
        f"/api/v1/customers/{customer['id']}/scheduled-payments",
        json={"billing_method_id": method["id"], "amount": 12_345, "due_date": "2099-01-01"},
    )
    assert scheduled.status_code == 201, scheduled.text
    role = gateway.post("/api/v1/roles", json={"name": f"ops-{uuid.uuid4().hex[:8]}", "permissions": ["ops.manage"]})
    name, password = f"ops-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    grants = [{"role_id": role.json()["id"], "location_id": None}]
    assert gateway.post("/api/v1/users", json={"username": name, "password": password, "grants": grants}).ok
    operator = Gateway(stack.gateway_url, credentials={"username": name, "password": password})
    assert operator.get(f"/api/v1/customers/{customer['id']}/payments").status_code in (403, 404)
    refused = assert_problem(operator.post("/api/v1/billing/run-due", json={"date": "2099-01-01"}), 422)
    assert "date" in refused["errors"]
    assert operator.post("/api/v1/billing/run-due", json={}).status_code == 202  # today's run: not due yet
    time.sleep(3)
    listed = gateway.get(f"/api/v1/customers/{customer['id']}/scheduled-payments").json()["items"]
    assert [item["status"] for item in listed] == ["scheduled"]
    assert gateway.get(f"/api/v1/customers/{customer['id']}/payments").json()["total"] == 0
