"""The foundation end to end: auth, the customer → property → delete cascade, errors, health."""

from __future__ import annotations

import pytest
import requests
from conftest import assert_problem, customer_body

from vigil_shared.config import SERVICES

WEB_PROCESSES = {"gateway", *SERVICES}  # the gunicorn processes; the others are workers, relays and a beat


@pytest.fixture(scope="module")
def home(locations) -> int:
    return locations["home"]


def new_customer(gateway, location_id, **fields) -> dict:
    response = gateway.post("/api/v1/customers", json=customer_body(location_id, **fields))
    assert response.status_code == 201, response.text
    return response.json()


def new_property(gateway, customer_id: int, **fields) -> dict:
    response = gateway.post(f"/api/v1/customers/{customer_id}/properties", json={"address": "1 Main St"} | fields)
    assert response.status_code == 201, response.text
    return response.json()


# --- processes and health ---------------------------------------------------------------------


def test_every_process_is_healthy_and_ready(stack):
    for process in stack.processes:
        ready = requests.get(process.ready_url, timeout=5)
        assert ready.status_code == 200, (process.name, ready.text)
        checks = ready.json()["checks"]
        if process.name.startswith("sandbox-"):  # a sandbox of an external system has neither
            continue
        if process.name in WEB_PROCESSES:  # its database (its events go to the outbox), not the broker
            assert set(checks) == {"database"}, process.name
        else:  # workers, relays and the beat: the broker too (the gateway worker checks its delivery process)
            assert {"database", "broker"} <= set(checks), process.name
        health = requests.get(process.ready_url.replace("/readyz", "/healthz"), timeout=5)
        assert health.status_code == 200 and health.json()["status"] == "ok"


# --- authentication ---------------------------------------------------------------------------


def test_api_needs_a_token(anonymous):
    for path in ("/api/v1/customers", "/api/v1/customers/1", "/api/v1/properties/1", "/api/v1/anything"):
        problem = assert_problem(anonymous.get(path), 401)
        assert problem["type"] == "urn:vigil:problem:unauthenticated"


def test_wrong_password_is_refused(anonymous):
    assert_problem(anonymous.post("/api/v1/auth/token", json={"username": "admin", "password": "nope"}), 401)


def test_services_refuse_calls_that_bypass_the_gateway(stack, gateway):
    for name in ("customer", "property", "billing", "credit"):
        port = stack.env[f"VIGIL_{name.upper()}_PORT"]
        direct = requests.get(
            f"http://127.0.0.1:{port}/api/v1/customers",
            timeout=5,
            headers={"Authorization": gateway.http.headers["Authorization"]},
        )
        assert_problem(direct, 401)


def test_request_id_is_propagated(gateway):
    response = gateway.get("/api/v1/customers", headers={"X-Request-ID": "e2e-trace-1"})
    assert response.status_code == 200 and response.headers["X-Request-ID"] == "e2e-trace-1"
    assert len(gateway.get("/api/v1/customers").headers["X-Request-ID"]) == 32


def test_the_callers_request_id_reaches_the_customer_history(gateway, home):
    """The id a caller sees in X-Request-ID is the one the service records (the gateway once reused an
    identity token signed without it, so every history entry had an empty request_id)."""
    record = new_customer(gateway, home, first_name="Rid", last_name="Trace", primary_phone="613-555-0131")
    url = f"/api/v1/customers/{record['id']}"
    for request_id, spouse in (("abc-123", "Sam"), ("abc-456", "Kim")):  # the second call hits the identity cache
        changed = gateway.patch(url, json={"spouse": spouse}, headers={"X-Request-ID": request_id})
        assert changed.status_code == 200 and changed.headers["X-Request-ID"] == request_id, changed.text
    entries = gateway.get(f"{url}/history", params={"field": "spouse"}).json()["items"]
    assert {(e["new_value"], e["request_id"]) for e in entries} >= {("Sam", "abc-123"), ("Kim", "abc-456")}, entries


# --- the customer → property → delete cascade --------------------------------------------------


def test_property_for_unknown_customer_is_422(gateway):
    problem = assert_problem(gateway.post("/api/v1/customers/987654/properties", json={"address": "x"}), 422)
    assert "customer_id" in problem["errors"]


def test_delete_customer_cascades_to_its_properties_and_a_replay_changes_nothing(gateway, home):
    owner = new_customer(gateway, home, email="owner@example.com", primary_phone="613-555-0111")
    neighbour = new_customer(
        gateway, home, email="neighbour@example.com", first_name="Nell", primary_phone="613-555-0112"
    )
    home = new_property(gateway, owner["id"], account_number="ACC-1001")
    shop = new_property(gateway, owner["id"], account_number="ACC-1002")
    kept = new_property(gateway, neighbour["id"], account_number="ACC-2001")
    listed = gateway.get(f"/api/v1/customers/{owner['id']}/properties").json()
    assert {p["id"] for p in listed["items"]} == {home["id"], shop["id"]}

    deleted = gateway.delete(f"/api/v1/customers/{owner['id']}")
    assert deleted.status_code == 204
    assert_problem(gateway.get(f"/api/v1/customers/{owner['id']}"), 404)
    for prop in (home, shop):
        gateway.wait_for(
            lambda p=prop: gateway.get(f"/api/v1/properties/{p['id']}").status_code == 404,
            what=f"property {prop['id']} to be removed by customer.deleted",
        )
    assert gateway.get(f"/api/v1/properties/{kept['id']}").status_code == 200
    assert_problem(gateway.post(f"/api/v1/customers/{owner['id']}/properties", json={"address": "late"}), 422)

    # The same event delivered again (what at-least-once delivery does): the property service
    # recognises it and changes nothing.
    events = gateway.get("/api/v1/ops/customer/outbox", params={"type": "customer.deleted", "per_page": 100}).json()
    event = next(e for e in events["items"] if e["request_id"] == deleted.headers["X-Request-ID"])
    inbox_url = f"/api/v1/ops/property/inbox/{event['event_id']}"
    first = gateway.wait_for(
        lambda: (r := gateway.get(inbox_url)).ok and r.json(), what="the property service to record the event"
    )
    assert first["duplicates"] == 0
    assert gateway.post(f"/api/v1/ops/customer/outbox/{event['event_id']}/redeliver").status_code == 202
    second = gateway.wait_for(
        lambda: (r := gateway.get(f"/api/v1/ops/property/inbox/{event['event_id']}").json())["duplicates"] == 1 and r,
        what="the repeated event to reach the property service",
    )
    assert second["processed_at"] == first["processed_at"]
    assert gateway.get(f"/api/v1/properties/{kept['id']}").status_code == 200
    assert gateway.get(f"/api/v1/customers/{neighbour['id']}/properties").json()["total"] == 1
    for prop in (home, shop):
        assert gateway.get(f"/api/v1/properties/{prop['id']}").status_code == 404


def test_property_right_after_customer_creation(gateway, home):
    """No waiting for replication: the property service asks the customer service when unsure."""
    customer = new_customer(gateway, home, first_name="Quick", primary_phone="613-555-0113")
    created = new_property(gateway, customer["id"], city="Ottawa", postal_code="K1A 0A6")
    fetched = gateway.get(f"/api/v1/properties/{created['id']}")
    assert fetched.status_code == 200 and fetched.json()["customer_id"] == customer["id"]
    assert fetched.headers["ETag"]


# --- customers through the gateway --------------------------------------------------------------


def test_customer_crud_with_etags(gateway, home):
    created = gateway.post(
        "/api/v1/customers",
        json=customer_body(
            home, first_name="Ann", last_name="Lee", email="ann@example.com", primary_phone="613-555-0114"
        ),
    )
    assert created.status_code == 201
    location = created.headers["Location"]
    assert location.startswith("/api/v1/customers/")
    etag = created.headers["ETag"]
    updated = gateway.patch(location, json={"work_phone": "613-555-0199"}, headers={"If-Match": etag})
    assert updated.status_code == 200 and updated.json()["work_phone"] == "613-555-0199"
    assert_problem(gateway.patch(location, json={"work_phone": "613-555-0198"}, headers={"If-Match": etag}), 412)
    assert gateway.get(location).json()["work_phone"] == "613-555-0199"
    page = gateway.get("/api/v1/customers", params={"q": "ann@example", "per_page": 1})
    assert page.status_code == 200 and page.json()["total"] == 1


def test_email_must_be_unique(gateway, home):
    new_customer(gateway, home, email="unique@example.com", first_name="Una", primary_phone="613-555-0115")
    problem = assert_problem(
        gateway.post(
            "/api/v1/customers",
            json=customer_body(
                home, first_name="Other", last_name="Person", email="UNIQUE@example.com", primary_phone="613-555-0116"
            ),
        ),
        409,
    )
    assert "email" in problem["errors"]


def test_bad_input_is_problem_json_never_500(gateway):
    assert_problem(gateway.post("/api/v1/customers", data="{bad", headers={"Content-Type": "application/json"}), 400)
    wrong_type = assert_problem(gateway.post("/api/v1/customers", json={"first_name": 5, "last_name": "x"}), 422)
    assert "first_name" in wrong_type["errors"]
    unknown = assert_problem(
        gateway.post("/api/v1/customers", json={"first_name": "a", "last_name": "b", "is_admin": True}), 422
    )
    assert "is_admin" in unknown["errors"]
    assert_problem(gateway.post("/api/v1/customers", data="first_name=a", headers={"Content-Type": "text/plain"}), 415)
    assert_problem(
        gateway.post(
            "/api/v1/customers",
            data=b"{" + b" " * (2 * 1024 * 1024) + b"}",
            headers={"Content-Type": "application/json"},
        ),
        413,
    )
    assert_problem(gateway.get("/api/v1/customers", params={"per_page": "lots"}), 422)
    assert_problem(gateway.get("/api/v1/customers/not-a-number"), 404)
    assert_problem(gateway.post("/api/v1/customers/1/properties", json={"account_number": ["x"]}), 422)


# --- the public OpenAPI document ----------------------------------------------------------------


def test_merged_openapi_document_covers_every_service(anonymous, gateway):
    doc = gateway.get("/api/v1/openapi.json").json()
    assert doc["openapi"].startswith("3.1")
    assert "x-vigil-unavailable-services" not in doc
    paths = doc["paths"]
    for path in (
        "/api/v1/auth/token",
        "/api/v1/customers",
        "/api/v1/customers/{customer_id}",
        "/api/v1/customers/{customer_id}/properties",
        "/api/v1/properties/{property_id}",
        "/api/v1/ops/customer/outbox",
    ):
        assert path in paths, path
    assert paths["/api/v1/customers/{customer_id}/properties"]["post"]["x-vigil-service"] == "property"
    docs = anonymous.get("/api/v1/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text
