"""Attacker's view of the gateway's identity rules: no one gains a right they do not hold.

- only administrators act on administrator accounts (password, email, name, activation, grants);
- nobody acts on an account holding rights they lack (taking it over would gain those rights);
- nobody hands out a permission they do not hold where it applies: role permissions, role grants,
  API keys;
- an API key's rights are its own scope intersected with its creator's rights *now*.
"""

from datetime import UTC

import pytest
from conftest import ADMIN_PASSWORD, PASSWORD, bearer, make_user, sign_in


def refused(response, status=403):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["status"] == status
    return response.json


def make_role(client, auth, name, permissions):
    response = client.post("/api/v1/roles", headers=auth, json={"name": name, "permissions": permissions})
    assert response.status_code == 201, response.json
    return response.json["id"]


def admin_id(client, auth):
    return next(u["id"] for u in client.get("/api/v1/users", headers=auth).json["items"] if u["username"] == "admin")


@pytest.fixture
def world(client, auth):
    north = client.post("/api/v1/locations", json={"name": "North"}, headers=auth).json["id"]
    south = client.post("/api/v1/locations", json={"name": "South"}, headers=auth).json["id"]
    clerk = make_role(client, auth, "Clerk", ["customers.view", "customers.modify"])
    hr = make_role(client, auth, "HR", ["users.manage"])
    make_user(client, auth, "hank", grants=[{"role_id": hr, "location_id": None}])
    return {"north": north, "south": south, "clerk": clerk, "hr": hr, "hank": bearer(sign_in(client, "hank", PASSWORD))}


# --- administrator accounts ----------------------------------------------------------------------


def test_a_user_manager_cannot_take_over_an_administrator(client, auth, world):
    hank, admin = world["hank"], admin_id(client, auth)
    refused(client.post(f"/api/v1/users/{admin}/password", headers=hank, json={"password": "hank-owns-you-now"}))
    for change in ({"active": False}, {"email": "hank@example.com"}, {"name": "Hank's puppet"}, {"grants": []}):
        refused(client.patch(f"/api/v1/users/{admin}", headers=hank, json=change))
    user = client.get(f"/api/v1/users/{admin}", headers=auth).json
    assert user["active"] and user["email"] is None and user["name"] == "Administrator"
    sign_in(client, "admin", ADMIN_PASSWORD)  # the password is still the admin's own


def test_an_administrator_acts_on_administrator_accounts(client, auth, world):
    second = make_user(client, auth, "root2", is_admin=True)
    assert (
        client.post(
            f"/api/v1/users/{second['id']}/password", headers=auth, json={"password": "another-long-password"}
        ).status_code
        == 204
    )
    changed = client.patch(
        f"/api/v1/users/{second['id']}", headers=auth, json={"email": "root2@example.com", "active": False}
    )
    assert changed.status_code == 200 and changed.json["active"] is False


def test_an_api_key_with_users_manage_cannot_touch_an_administrator(client, auth, world):
    key = client.post("/api/v1/api-keys", headers=auth, json={"name": "hr-sync", "permissions": ["users.manage"]})
    assert key.status_code == 201
    headers = {"X-API-Key": key.json["key"]}
    refused(
        client.post(
            f"/api/v1/users/{admin_id(client, auth)}/password", headers=headers, json={"password": "key-owns-you-now"}
        )
    )


# --- accounts holding more than the caller -------------------------------------------------------


def test_a_user_manager_cannot_take_over_a_user_holding_more(client, auth, world):
    clerk = make_user(client, auth, "cleo", grants=[{"role_id": world["clerk"], "location_id": world["north"]}])
    hank = world["hank"]
    problem = refused(
        client.post(f"/api/v1/users/{clerk['id']}/password", headers=hank, json={"password": "hank-is-cleo-now"})
    )
    assert "Holds what you do not: customers.view" in problem["errors"]["user"]
    refused(client.patch(f"/api/v1/users/{clerk['id']}", headers=hank, json={"email": "hank@example.com"}))
    refused(client.patch(f"/api/v1/users/{clerk['id']}", headers=hank, json={"active": False}))
    plain = make_user(client, auth, "pat")  # holds nothing hank lacks
    assert (
        client.post(
            f"/api/v1/users/{plain['id']}/password", headers=hank, json={"password": "a-new-long-password"}
        ).status_code
        == 204
    )
    assert (
        client.patch(f"/api/v1/users/{plain['id']}", headers=hank, json={"email": "pat@example.com"}).status_code == 200
    )


def test_only_administrators_give_administrator_rights(client, auth, world):
    plain = make_user(client, auth, "pat")
    refused(client.patch(f"/api/v1/users/{plain['id']}", headers=world["hank"], json={"is_admin": True}))
    refused(
        client.post(
            "/api/v1/users", headers=world["hank"], json={"username": "mole", "password": PASSWORD, "is_admin": True}
        )
    )


# --- grants --------------------------------------------------------------------------------------


@pytest.fixture
def manager(client, auth, world):
    """Holds users.manage and roles.manage everywhere, and the clerk's rights at North only."""
    admin_role = make_role(client, auth, "People admin", ["users.manage", "roles.manage"])
    make_user(
        client,
        auth,
        "mona",
        grants=[
            {"role_id": admin_role, "location_id": None},
            {"role_id": world["clerk"], "location_id": world["north"]},
        ],
    )
    return bearer(sign_in(client, "mona", PASSWORD))


def test_grants_only_of_what_the_granter_holds_where_they_hold_it(client, auth, world, manager):
    target = make_user(client, auth, "tom")
    url = f"/api/v1/users/{target['id']}"
    for grants in (
        [{"role_id": world["clerk"], "location_id": world["south"]}],
        [{"role_id": world["clerk"], "location_id": None}],
    ):
        problem = refused(client.patch(url, headers=manager, json={"grants": grants}))
        assert problem["errors"]["grants"]
    deleter = make_role(client, auth, "Deleter", ["customers.delete"])
    refused(client.patch(url, headers=manager, json={"grants": [{"role_id": deleter, "location_id": world["north"]}]}))
    refused(
        client.post(
            "/api/v1/users",
            headers=manager,
            json={
                "username": "tim",
                "password": PASSWORD,
                "grants": [{"role_id": world["clerk"], "location_id": world["south"]}],
            },
        )
    )
    assert client.get(url, headers=auth).json["grants"] == []
    allowed = client.patch(
        url, headers=manager, json={"grants": [{"role_id": world["clerk"], "location_id": world["north"]}]}
    )
    assert allowed.status_code == 200 and allowed.json["grants"][0]["location_id"] == world["north"]


def test_a_manager_cannot_widen_their_own_grants(client, auth, world, manager):
    me = next(u for u in client.get("/api/v1/users", headers=auth).json["items"] if u["username"] == "mona")
    grants = [{"role_id": g["role_id"], "location_id": g["location_id"]} for g in me["grants"]]
    refused(
        client.patch(
            f"/api/v1/users/{me['id']}",
            headers=manager,
            json={"grants": grants + [{"role_id": world["clerk"], "location_id": None}]},
        )
    )


def test_an_administrator_grants_anything(client, auth, world):
    target = make_user(client, auth, "ada")
    changed = client.patch(
        f"/api/v1/users/{target['id']}",
        headers=auth,
        json={"grants": [{"role_id": world["clerk"], "location_id": None}]},
    )
    assert changed.status_code == 200


# --- role permissions ----------------------------------------------------------------------------


def test_a_role_manager_cannot_add_a_permission_they_do_not_hold(client, auth, world, manager):
    me = client.get("/api/v1/roles", headers=auth).json["items"]
    people_admin = next(r for r in me if r["name"] == "People admin")
    for extra in ("audit.view", "customers.delete"):
        problem = refused(
            client.patch(
                f"/api/v1/roles/{people_admin['id']}",
                headers=manager,
                json={"permissions": people_admin["permissions"] + [extra]},
            )
        )
        assert problem["errors"]["permissions"] == [f"Not yours to give: {extra}"]
    refused(
        client.post("/api/v1/roles", headers=manager, json={"name": "Peeker", "permissions": ["confidential.ssn.view"]})
    )
    assert client.get(f"/api/v1/roles/{people_admin['id']}", headers=auth).json["permissions"] == [
        "roles.manage",
        "users.manage",
    ]


def test_a_role_manager_cannot_extend_a_role_held_where_they_lack_the_permission(client, auth, world, manager):
    viewer = make_role(client, auth, "South viewer", ["customers.modify"])
    make_user(client, auth, "sid", grants=[{"role_id": viewer, "location_id": world["south"]}])
    refused(
        client.patch(
            f"/api/v1/roles/{viewer}", headers=manager, json={"permissions": ["customers.modify", "customers.view"]}
        )
    )
    # A role no one holds yet may get what the manager holds somewhere; granting it is checked again.
    fresh = client.post("/api/v1/roles", headers=manager, json={"name": "Viewer", "permissions": ["customers.view"]})
    assert fresh.status_code == 201
    # Nor strip it from them: taking a permission away needs holding it where the role is held.
    problem = refused(client.patch(f"/api/v1/roles/{viewer}", headers=manager, json={"permissions": []}))
    assert problem["errors"]["permissions"] == ["Not yours to take away: customers.modify"]
    assert client.get(f"/api/v1/roles/{viewer}", headers=auth).json["permissions"] == ["customers.modify"]
    assert client.patch(f"/api/v1/roles/{viewer}", headers=auth, json={"permissions": []}).status_code == 200


def test_a_role_manager_takes_away_what_they_hold_where_the_role_is_held(client, auth, world, manager):
    north_clerk = make_role(client, auth, "North helper", ["customers.view", "roles.manage"])
    make_user(client, auth, "nell", grants=[{"role_id": north_clerk, "location_id": world["north"]}])
    changed = client.patch(f"/api/v1/roles/{north_clerk}", headers=manager, json={"permissions": ["customers.view"]})
    assert changed.status_code == 200 and changed.json["permissions"] == ["customers.view"]


def test_an_administrator_adds_any_permission_to_a_role(client, auth, world):
    changed = client.patch(
        f"/api/v1/roles/{world['hr']}", headers=auth, json={"permissions": ["users.manage", "audit.view"]}
    )
    assert changed.status_code == 200


# --- API keys ------------------------------------------------------------------------------------


@pytest.fixture
def kim(client, auth, world):
    keymaker = make_role(client, auth, "Keymaker", ["api_keys.manage", "customers.view", "customers.modify"])
    user = make_user(client, auth, "kim", grants=[{"role_id": keymaker, "location_id": world["north"]}])
    return {"id": user["id"], "role": keymaker, "headers": bearer(sign_in(client, "kim", PASSWORD))}


def test_an_api_key_cannot_be_broader_than_its_creator(client, auth, world, kim):
    for body in (
        {"permissions": ["customers.view"]},  # every location
        {"permissions": ["customers.view"], "location_ids": [world["south"]]},
        {"permissions": ["customers.delete"], "location_ids": [world["north"]]},
        {"permissions": ["audit.view"]},
    ):
        refused(client.post("/api/v1/api-keys", headers=kim["headers"], json={"name": "wide"} | body))
    created = client.post(
        "/api/v1/api-keys",
        headers=kim["headers"],
        json={"name": "narrow", "permissions": ["customers.view"], "location_ids": [world["north"]]},
    )
    assert created.status_code == 201 and created.json["created_by"] == kim["id"]


def key_rights(client, key):
    me = client.get("/api/v1/me", headers={"X-API-Key": key})
    assert me.status_code == 200, me.json
    return {loc["location_id"]: loc["permissions"] for loc in me.json["locations"]}


def test_an_api_key_loses_what_its_creator_loses_at_once(client, auth, world, kim):
    key = client.post(
        "/api/v1/api-keys",
        headers=kim["headers"],
        json={
            "name": "sync",
            "permissions": ["customers.view", "customers.modify"],
            "location_ids": [world["north"]],
        },
    ).json["key"]
    assert key_rights(client, key) == {world["north"]: ["customers.modify", "customers.view"]}
    assert key_rights(client, key)  # from the identity cache
    narrower = make_role(client, auth, "Keymaker lite", ["api_keys.manage", "customers.view"])
    assert (
        client.patch(
            f"/api/v1/users/{kim['id']}",
            headers=auth,
            json={"grants": [{"role_id": narrower, "location_id": world["north"]}]},
        ).status_code
        == 200
    )
    assert key_rights(client, key) == {world["north"]: ["customers.view"]}
    assert (
        client.patch(f"/api/v1/roles/{narrower}", headers=auth, json={"permissions": ["api_keys.manage"]}).status_code
        == 200
    )
    assert key_rights(client, key) == {}


def test_an_api_key_stops_when_its_creator_is_deactivated(client, auth, world, kim):
    key = client.post(
        "/api/v1/api-keys",
        headers=kim["headers"],
        json={"name": "sync", "permissions": ["customers.view"], "location_ids": [world["north"]]},
    ).json["key"]
    assert client.get("/api/v1/customers", headers={"X-API-Key": key}).status_code == 200
    assert client.patch(f"/api/v1/users/{kim['id']}", headers=auth, json={"active": False}).status_code == 200
    refused(client.get("/api/v1/customers", headers={"X-API-Key": key}), 401)
    assert client.patch(f"/api/v1/users/{kim['id']}", headers=auth, json={"active": True}).status_code == 200
    assert client.get("/api/v1/customers", headers={"X-API-Key": key}).status_code == 200


def test_a_key_made_with_a_key_answers_to_the_same_person(client, auth, world, kim):
    parent = client.post(
        "/api/v1/api-keys",
        headers=kim["headers"],
        json={"name": "parent", "permissions": ["api_keys.manage", "customers.view"]},
    )
    refused(parent)  # customers.view everywhere: kim holds it at North only
    parent = client.post(
        "/api/v1/api-keys", headers=kim["headers"], json={"name": "parent", "permissions": ["api_keys.manage"]}
    ).json
    child = client.post(
        "/api/v1/api-keys",
        headers={"X-API-Key": parent["key"]},
        json={"name": "child", "permissions": ["api_keys.manage"]},
    )
    assert child.status_code == 201 and child.json["created_by"] == kim["id"]
    assert client.patch(f"/api/v1/users/{kim['id']}", headers=auth, json={"active": False}).status_code == 200
    refused(client.get("/api/v1/me", headers={"X-API-Key": child.json["key"]}), 401)


def test_only_an_administrator_revokes_an_administrators_key(client, auth, world, kim):
    """A key is its creator's credential: revoking it acts on their account, under the same rule."""
    admins = client.post(
        "/api/v1/api-keys", headers=auth, json={"name": "monitoring", "permissions": ["customers.view"]}
    )
    assert admins.status_code == 201
    refused(client.delete(f"/api/v1/api-keys/{admins.json['id']}", headers=kim["headers"]))
    assert client.get("/api/v1/me", headers={"X-API-Key": admins.json["key"]}).status_code == 200
    # nor a key of someone holding more than the caller
    richer = make_role(client, auth, "Keymaker plus", ["api_keys.manage", "customers.view", "customers.delete"])
    make_user(client, auth, "rich", grants=[{"role_id": richer, "location_id": world["north"]}])
    rich = bearer(sign_in(client, "rich", PASSWORD))
    theirs = client.post(
        "/api/v1/api-keys",
        headers=rich,
        json={"name": "rich-sync", "permissions": ["customers.delete"], "location_ids": [world["north"]]},
    ).json
    refused(client.delete(f"/api/v1/api-keys/{theirs['id']}", headers=kim["headers"]))
    assert client.delete(f"/api/v1/api-keys/{theirs['id']}", headers=rich).status_code == 204


def test_a_creator_and_their_keys_revoke_the_creators_keys(client, auth, world, kim):
    mine = client.post(
        "/api/v1/api-keys", headers=kim["headers"], json={"name": "mine", "permissions": ["api_keys.manage"]}
    ).json
    other = client.post(
        "/api/v1/api-keys",
        headers=kim["headers"],
        json={"name": "other", "permissions": ["customers.view"], "location_ids": [world["north"]]},
    ).json
    assert client.delete(f"/api/v1/api-keys/{other['id']}", headers={"X-API-Key": mine["key"]}).status_code == 204
    assert client.delete(f"/api/v1/api-keys/{mine['id']}", headers=kim["headers"]).status_code == 204
    admins = client.post("/api/v1/api-keys", headers=auth, json={"name": "a", "permissions": ["customers.view"]}).json
    another = client.post(
        "/api/v1/api-keys",
        headers=kim["headers"],
        json={"name": "another", "permissions": ["customers.view"], "location_ids": [world["north"]]},
    ).json
    assert client.delete(f"/api/v1/api-keys/{another['id']}", headers=auth).status_code == 204  # an administrator
    assert client.delete(f"/api/v1/api-keys/{admins['id']}", headers=auth).status_code == 204


def test_a_key_made_with_a_key_stops_with_that_key(client, auth, world, kim):
    """A leaked short-lived key must not mint a lasting one: the new key answers to the key it was
    made with, and stops when that one is revoked or expires."""
    from datetime import datetime, timedelta

    soon = (datetime.now(UTC) + timedelta(hours=1)).isoformat()
    parent = key_manager(client, kim["headers"], "parent", expires_at=soon)
    child = key_manager(client, {"X-API-Key": parent["key"]}, "child", expires_at=None)
    grandchild = key_manager(client, {"X-API-Key": child["key"]}, "grandchild")
    assert child["made_with_key_id"] == parent["id"] and grandchild["made_with_key_id"] == child["id"]
    assert client.get("/api/v1/me", headers={"X-API-Key": grandchild["key"]}).status_code == 200
    assert client.delete(f"/api/v1/api-keys/{parent['id']}", headers=kim["headers"]).status_code == 204
    refused(client.get("/api/v1/me", headers={"X-API-Key": child["key"]}), 401)
    refused(client.get("/api/v1/me", headers={"X-API-Key": grandchild["key"]}), 401)


def test_a_key_made_with_a_key_expires_with_that_key(client, auth, world, kim):
    import time
    from datetime import datetime, timedelta

    soon = datetime.now(UTC) + timedelta(seconds=3)
    parent = key_manager(client, kim["headers"], "parent", expires_at=soon.isoformat())
    child = key_manager(client, {"X-API-Key": parent["key"]}, "child")
    assert client.get("/api/v1/me", headers={"X-API-Key": child["key"]}).status_code == 200  # now cached
    time.sleep(max(0.0, (soon - datetime.now(UTC)).total_seconds()) + 0.5)
    refused(client.get("/api/v1/me", headers={"X-API-Key": child["key"]}), 401)  # nothing bumped the epoch
    made_by_kim = key_manager(client, kim["headers"], "kims")
    assert made_by_kim["made_with_key_id"] is None
    assert client.get("/api/v1/me", headers={"X-API-Key": made_by_kim["key"]}).status_code == 200


def key_manager(client, headers, name, **fields):
    """A new API key holding ``api_keys.manage``, made with ``headers`` (``fields``: e.g. ``expires_at``)."""
    response = client.post(
        "/api/v1/api-keys", headers=headers, json={"name": name, "permissions": ["api_keys.manage"], **fields}
    )
    return response.json


def add_clerk(client, headers, world, username, location_id):
    """``headers`` create the user ``username`` with the clerk role at ``location_id`` (None: everywhere)."""
    grants = [{"role_id": world["clerk"], "location_id": location_id}]
    body = {"username": username, "password": PASSWORD, "grants": grants}
    return client.post("/api/v1/users", headers=headers, json=body)


def clerk_office_by_office(client, auth, world, username, role, permissions):
    """A user holding ``permissions`` (a new role) everywhere, and the clerk's rights at each office open
    today but not everywhere: ``(the role's id, the offices, the user's auth headers)``."""
    people = make_role(client, auth, role, permissions)
    offices = [loc["id"] for loc in client.get("/api/v1/locations", headers=auth).json["items"]]
    clerk = [{"role_id": world["clerk"], "location_id": office} for office in offices]
    make_user(client, auth, username, grants=[{"role_id": people, "location_id": None}, *clerk])
    return people, offices, bearer(sign_in(client, username, PASSWORD))


def test_a_grant_at_every_location_needs_the_permission_at_locations_opened_later(client, auth, world):
    """Holding a permission at each office open today is not holding it everywhere: a role granted
    at every location reaches the next office too, where the granter holds nothing."""
    people, offices, gus = clerk_office_by_office(
        client, auth, world, "gus", "People and places", ["users.manage", "roles.manage", "locations.manage"]
    )
    problem = refused(add_clerk(client, gus, world, "puppet", None))
    assert "including those opened later: customers.view" in " ".join(problem["errors"]["grants"])
    for office in offices:  # office by office is the granter's to give
        assert add_clerk(client, gus, world, f"clerk-{office}", office).status_code == 201
    # nor by adding the permission to a role held at every location
    everywhere = make_role(client, auth, "Everywhere", [])
    make_user(client, auth, "eve", grants=[{"role_id": everywhere, "location_id": None}])
    refused(client.patch(f"/api/v1/roles/{everywhere}", headers=gus, json={"permissions": ["customers.view"]}))
    # who holds it at every location gives it at every location
    make_user(
        client,
        auth,
        "gwen",
        grants=[{"role_id": people, "location_id": None}, {"role_id": world["clerk"], "location_id": None}],
    )
    gwen = bearer(sign_in(client, "gwen", PASSWORD))
    assert add_clerk(client, gwen, world, "clerk-all", None).status_code == 201


def test_an_account_holding_a_right_everywhere_is_not_taken_over_by_one_holding_it_office_by_office(
    client, auth, world
):
    """Taking over an account gains what it holds, offices opened later included."""
    _, offices, otto = clerk_office_by_office(client, auth, world, "otto", "Account keepers", ["users.manage"])
    everywhere = make_user(client, auth, "wendy", grants=[{"role_id": world["clerk"], "location_id": None}])
    problem = refused(
        client.post(f"/api/v1/users/{everywhere['id']}/password", headers=otto, json={"password": "otto-is-wendy-now"})
    )
    assert "Holds what you do not: customers.view" in problem["errors"]["user"]
    office_by_office = make_user(
        client, auth, "olga", grants=[{"role_id": world["clerk"], "location_id": office} for office in offices]
    )
    assert (
        client.post(
            f"/api/v1/users/{office_by_office['id']}/password", headers=otto, json={"password": "a-new-long-password"}
        ).status_code
        == 204
    )


# --- central-station integrations ------------------------------------------------------------------


def test_a_station_credential_is_handed_out_only_by_someone_who_may_change_every_property(client, auth, world):
    """An integration's secret signs a central station's account statuses and signals, which change the
    monitoring status of the properties it monitors in every office. ``integrations.manage`` alone (a
    company-wide right) was enough to make one, or to rotate its secret and be shown the new one: the
    manager could then cancel the monitoring of properties in offices where they may change nothing."""
    body = {"name": "Rogue station", "rate_limit_per_minute": 60}
    made = client.post("/api/v1/integrations", json={"name": "Real station", "rate_limit_per_minute": 60}, headers=auth)
    assert made.status_code == 201, made.json
    station = f"/api/v1/integrations/{made.json['id']}"
    north_only = make_role(
        client, auth, "Stations north", ["integrations.manage", "properties.view", "properties.modify"]
    )
    managers = {
        "alone": make_role(client, auth, "Stations", ["integrations.manage"]),
        "north": north_only,
    }
    for name, role in managers.items():
        where = world["north"] if name == "north" else None
        make_user(client, auth, f"ivan-{name}", grants=[{"role_id": role, "location_id": where}])
        manager = bearer(sign_in(client, f"ivan-{name}", PASSWORD))
        refused(client.post("/api/v1/integrations", json=body, headers=manager))
        refused(client.post(f"{station}/rotate-secret", json={"overlap_seconds": 0}, headers=manager))
        etag = client.get(station, headers=manager).headers["ETag"]
        refused(client.patch(station, json={"monitoring_company_id": 1}, headers=manager | {"If-Match": etag}))
        changed = client.patch(station, json={"rate_limit_per_minute": 30}, headers=manager | {"If-Match": etag})
        assert changed.status_code == 200, changed.json
    everywhere = make_role(
        client, auth, "Stations all", ["integrations.manage", "properties.view", "properties.modify"]
    )
    make_user(client, auth, "ivan-all", grants=[{"role_id": everywhere, "location_id": None}])
    manager = bearer(sign_in(client, "ivan-all", PASSWORD))
    assert client.post("/api/v1/integrations", json=body, headers=manager).status_code == 201
    assert client.post(f"{station}/rotate-secret", json={"overlap_seconds": 0}, headers=manager).status_code == 200
