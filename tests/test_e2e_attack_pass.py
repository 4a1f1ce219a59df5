"""Another attacker's pass through the real stack: each test is a way in that was open, now closed.

- a doubled slash answered by Werkzeug's HTML redirect, naming the internal address of the service;
- an ``Idempotency-Key`` replay showing a value unmasked after the caller lost the right to read it.
"""

from __future__ import annotations

import random
import secrets
import uuid

import pytest
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
