"""An attacker's and a tester's pass through the real stack, over the gateway only.

Each test is a way in that was once open, or one that held and must keep
holding: nobody gains what they do not hold (keys minting keys, revoking an administrator's
credentials, grants reaching offices opened later), and no hand-made input gets a 500.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from conftest import Gateway, assert_problem, customer_body, unique_phone


def sign_in(stack, username: str, password: str) -> Gateway:
    response = Gateway(stack.gateway_url).post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.text
    return Gateway(stack.gateway_url, response.json()["access_token"])


def as_key(stack, key: str) -> Gateway:
    caller = Gateway(stack.gateway_url)
    caller.http.headers["X-API-Key"] = key
    return caller


def make_role(gateway, permissions) -> int:
    response = gateway.post("/api/v1/roles", json={"name": f"att-{uuid.uuid4().hex[:8]}", "permissions": permissions})
    assert response.status_code == 201, response.text
    return response.json()["id"]


def make_user(stack, gateway, grants) -> tuple[Gateway, dict, str]:
    """A user holding ``grants`` ([(permissions, location_id or None)]), signed in."""
    password, name = secrets.token_urlsafe(16), f"att-{uuid.uuid4().hex[:8]}"
    body = {
        "username": name,
        "password": password,
        "grants": [{"role_id": make_role(gateway, perms), "location_id": loc} for perms, loc in grants],
    }
    created = gateway.post("/api/v1/users", json=body)
    assert created.status_code == 201, created.text
    return sign_in(stack, name, password), created.json(), password


def all_offices(gateway) -> list[int]:
    return [loc["id"] for loc in gateway.get("/api/v1/locations", params={"per_page": 100}).json()["items"]]


# --- API keys ------------------------------------------------------------------------------------


def test_a_key_made_with_a_short_lived_key_stops_with_it(stack, gateway, locations):
    keymaker, _, _ = make_user(stack, gateway, [(["api_keys.manage", "customers.view"], locations["home"])])
    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    parent = keymaker.post(
        "/api/v1/api-keys",
        json={
            "name": "short",
            "permissions": ["api_keys.manage", "customers.view"],
            "location_ids": [locations["home"]],
            "expires_at": soon,
        },
    )
    assert parent.status_code == 201, parent.text
    child = as_key(stack, parent.json()["key"]).post(
        "/api/v1/api-keys",
        json={
            "name": "lasting",
            "permissions": ["customers.view"],
            "location_ids": [locations["home"]],
            "expires_at": None,
        },
    )
    assert child.status_code == 201, child.text
    assert child.json()["made_with_key_id"] == parent.json()["id"]
    assert as_key(stack, child.json()["key"]).get("/api/v1/customers").status_code == 200
    assert keymaker.delete(f"/api/v1/api-keys/{parent.json()['id']}").status_code == 204
    assert_problem(as_key(stack, child.json()["key"]).get("/api/v1/customers"), 401)


def test_a_key_manager_cannot_revoke_an_administrators_key(stack, gateway, locations):
    monitoring = gateway.post("/api/v1/api-keys", json={"name": "central-station", "permissions": ["customers.view"]})
    assert monitoring.status_code == 201
    manager, _, _ = make_user(stack, gateway, [(["api_keys.manage"], None)])
    listed = manager.get("/api/v1/api-keys", params={"per_page": 100}).json()["items"]
    assert monitoring.json()["key"] not in json.dumps(listed)  # listed, never the secret
    assert_problem(manager.delete(f"/api/v1/api-keys/{monitoring.json()['id']}"), 403)
    own_key = manager.post("/api/v1/api-keys", json={"name": "mine", "permissions": ["api_keys.manage"]}).json()
    assert_problem(as_key(stack, own_key["key"]).delete(f"/api/v1/api-keys/{monitoring.json()['id']}"), 403)
    assert as_key(stack, monitoring.json()["key"]).get("/api/v1/customers").status_code == 200
    assert manager.delete(f"/api/v1/api-keys/{own_key['id']}").status_code == 204
    assert gateway.delete(f"/api/v1/api-keys/{monitoring.json()['id']}").status_code == 204


# --- grants --------------------------------------------------------------------------------------


def test_a_grant_at_every_location_is_not_a_way_into_the_next_office(stack, gateway, locations):
    """A manager holding customers.view office by office grants it "everywhere" to a puppet account;
    the next office opened would give the puppet (whose password the manager chose) what the
    manager does not hold there."""
    offices = all_offices(gateway)
    manager, _, _ = make_user(
        stack,
        gateway,
        [(["users.manage", "roles.manage", "locations.manage"], None)]
        + [(["customers.view"], office) for office in offices],
    )
    viewer = manager.post(
        "/api/v1/roles", json={"name": f"att-view-{uuid.uuid4().hex[:6]}", "permissions": ["customers.view"]}
    )
    assert viewer.status_code == 201  # a role no one holds yet: granting it is judged where it is granted
    puppet = {
        "username": f"att-puppet-{uuid.uuid4().hex[:6]}",
        "password": secrets.token_urlsafe(16),
        "grants": [{"role_id": viewer.json()["id"], "location_id": None}],
    }
    assert_problem(manager.post("/api/v1/users", json=puppet), 403)
    puppet["grants"] = [{"role_id": viewer.json()["id"], "location_id": locations["home"]}]
    assert manager.post("/api/v1/users", json=puppet).status_code == 201
    opened = manager.post("/api/v1/locations", json={"name": f"Att Office {uuid.uuid4().hex[:6]}"})
    assert opened.status_code == 201
    me = sign_in(stack, puppet["username"], puppet["password"]).get("/api/v1/me").json()
    assert opened.json()["id"] not in [loc["location_id"] for loc in me["locations"]]


def test_no_way_to_take_over_or_widen(stack, gateway, locations):
    """The takeover and escalation paths found once stay closed for every field and route."""
    admin_id = gateway.get("/api/v1/me").json()["id"]
    hr, hr_user, _ = make_user(
        stack, gateway, [(["users.manage", "roles.manage"], None), (["customers.view"], locations["home"])]
    )
    for change in ({"active": False}, {"email": "hr@example.com"}, {"name": "x"}, {"grants": []}, {"is_admin": False}):
        assert_problem(hr.patch(f"/api/v1/users/{admin_id}", json=change), 403)
    assert_problem(hr.post(f"/api/v1/users/{admin_id}/password", json={"password": secrets.token_urlsafe(16)}), 403)
    assert_problem(hr.patch(f"/api/v1/users/{hr_user['id']}", json={"is_admin": True}), 403)
    own = [{"role_id": g["role_id"], "location_id": g["location_id"]} for g in hr_user["grants"]]
    located = next(g for g in own if g["location_id"] is not None)
    for wider in (
        {"role_id": located["role_id"], "location_id": locations["other"]},
        {"role_id": located["role_id"], "location_id": None},
    ):
        assert_problem(hr.patch(f"/api/v1/users/{hr_user['id']}", json={"grants": own + [wider]}), 403)
    for grant in own:
        assert_problem(
            hr.patch(
                f"/api/v1/roles/{grant['role_id']}",
                json={"permissions": ["users.manage", "roles.manage", "customers.view", "confidential.ssn.view"]},
            ),
            403,
        )
    assert_problem(
        hr.post("/api/v1/roles", json={"name": f"att-{uuid.uuid4().hex[:6]}", "permissions": ["api_keys.manage"]}), 403
    )
    # a deactivated administrator stays deactivated
    second = gateway.post(
        "/api/v1/users",
        json={"username": f"att-root-{uuid.uuid4().hex[:6]}", "password": secrets.token_urlsafe(16), "is_admin": True},
    ).json()
    assert gateway.patch(f"/api/v1/users/{second['id']}", json={"active": False}).status_code == 200
    assert_problem(hr.patch(f"/api/v1/users/{second['id']}", json={"active": True}), 403)


# --- values across the mask ----------------------------------------------------------------------


def test_a_property_transfer_never_shows_codes_masked_at_the_source(stack, gateway, locations):
    """PINs are masked for the mover where the property is, visible where it would go: refused."""
    # the target office is the test's own: the "other" office's lists are checked elsewhere for home ids
    target_office = gateway.post("/api/v1/locations", json={"name": f"Att Transfer {uuid.uuid4().hex[:6]}"})
    assert target_office.status_code == 201, target_office.text
    offices = {"home": locations["home"], "target": target_office.json()["id"]}
    owners = []
    for office in ("home", "target"):
        created = gateway.post(
            "/api/v1/customers",
            params={"allow_duplicates": "true"},
            json=customer_body(offices[office], last_name=f"Transfer{office}", primary_phone=unique_phone()),
        )
        assert created.status_code == 201, created.text
        owners.append(created.json()["id"])
    prop = gateway.post(
        f"/api/v1/customers/{owners[0]}/properties",
        json={
            "account_number": f"ATT-{uuid.uuid4().hex[:8]}",
            "pin": "7319",
            "address": "9 Vault Road",
            "city": "Ottawa",
        },
    )
    assert prop.status_code == 201, prop.text
    mover, _, _ = make_user(
        stack,
        gateway,
        [
            (["properties.view", "properties.modify"], locations["home"]),
            (["properties.view", "properties.modify", "confidential.installation_codes.view"], offices["target"]),
        ],
    )
    assert mover.get(f"/api/v1/properties/{prop.json()['id']}").json()["pin"] == "***"
    refused = mover.post(f"/api/v1/properties/{prop.json()['id']}/transfer", json={"to_customer_id": owners[1]})
    body = assert_problem(refused, 403)
    assert body["permission"] == "confidential.installation_codes.view" and "7319" not in refused.text
    assert gateway.get(f"/api/v1/properties/{prop.json()['id']}").json()["customer_id"] == owners[0]


# --- no 500 for any input -------------------------------------------------------------------------


def cursor_of(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "payload",
    [
        {"s": "created", "d": "next", "p": 2, "k": ["garbage", 1]},
        {"s": "name", "d": "next", "p": 2, "k": []},
        {"s": "name", "d": "next", "p": 2, "k": [{"a": 1}, "x"]},
        {"s": "id", "d": "next", "p": 2, "k": ["x"]},
        {"s": "id", "d": "next", "p": 2, "k": [10**30]},
    ],
)
def test_a_cursor_a_client_edited_is_a_422(gateway, locations, payload):
    created = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(locations["home"], last_name="Cursor"),
    )
    assert created.status_code == 201, created.text
    for extra in ({}, {"q": "cursor"}):
        body = assert_problem(
            gateway.get("/api/v1/customers", params={"sort": payload["s"], "cursor": cursor_of(payload)} | extra), 422
        )
        assert body["errors"]["cursor"]


def test_hand_made_input_never_gets_a_500(gateway, locations):
    record = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(locations["home"], last_name="Probe"),
    )
    assert record.status_code == 201, record.text
    record_id = record.json()["id"]
    answers = []

    def send(method, path, **kwargs):
        response = gateway.request(method, path, **kwargs)
        answers.append((method, path, str(kwargs)[:120], response.status_code, response.text[:200]))
        return response

    for path in (
        "/api/v1/customers",
        "/api/v1/users",
        "/api/v1/roles",
        "/api/v1/api-keys",
        "/api/v1/audit",
        f"/api/v1/customers/{record_id}/history",
        "/api/v1/appointments",
    ):
        for params in (
            {"page": 0},
            {"page": -1},
            {"page": 99999999999},
            {"per_page": 1000},
            {"sort": "ssn"},
            {"sort": "-birthdate"},
            [("page", "1"), ("page", "2")],
            {"location_id": 2**31},
            {"customer_id": 10**30},
            {"q": "\U0001f600\u202e" + "a" * 3000},
        ):
            send("GET", path, params=params)
    for body in (
        b"[]",
        b'"x"',
        b"1",
        b"null",
        b"{}",
        b'{"name": "a", "name": {"b": 1}}',
        b'{"location_id": 1e400}',
        b'{"location_id": NaN}',
        b'{"first_name": "\\ud800"}',
        b"\xff\xfe{}",
    ):
        for content_type in ("application/json", "application/json; charset=latin-1"):
            for path in (
                "/api/v1/customers",
                "/api/v1/users",
                "/api/v1/roles",
                "/api/v1/api-keys",
                f"/api/v1/customers/{record_id}/duplicate",
                f"/api/v1/customers/{record_id}/notes",
            ):
                send("POST", path, data=body, headers={"Content-Type": content_type})
            send("PATCH", f"/api/v1/customers/{record_id}", data=body, headers={"Content-Type": content_type})
    for if_match in ("garbage", "*", 'W/"1.1"', '"', ",,,", '"' + "x" * 4000 + '"'):
        send("PATCH", f"/api/v1/locations/{locations['other']}", json={"phone": "613"}, headers={"If-Match": if_match})
        send("DELETE", "/api/v1/api-keys/2147483647", headers={"If-Match": if_match})
    for key in ("x" * 201, "x" * 200, "\u00e9" * 20):
        send(
            "POST",
            "/api/v1/roles",
            json={"name": f"att-{uuid.uuid4().hex[:6]}", "permissions": []},
            headers={"Idempotency-Key": key},
        )
    send("DELETE", "/api/v1/api-keys/2147483647", data=b'{"x":', headers={"Content-Type": "application/json"})
    send("GET", "/api/v1/customers", data=b'{"x": 1}', headers={"Content-Type": "application/json"})
    for name in ("\U0001f600" * 40, "\u202eevil", "a\u0301" * 60, "\U0010ffff"):
        send(
            "POST",
            "/api/v1/customers",
            params={"allow_duplicates": "true"},
            json=customer_body(locations["home"], first_name=name, last_name=name),
        )
        send("GET", "/api/v1/customers", params={"q": name})
    failures = [answer for answer in answers if answer[3] >= 500]
    assert not failures, failures
