"""The gateway's own writes follow the API conventions: ``Idempotency-Key`` on POST, ETags and ``If-Match``."""

import json

import pytest
from conftest import PASSWORD, bearer, sign_in
from sqlalchemy import select

from vigil_gateway.models import ApiKey, IdempotencyRecord, User


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json


def test_a_repeated_idempotency_key_makes_one_api_key(client, auth, db):
    body = {"name": "billing sync", "permissions": ["customers.view"]}
    headers = auth | {"Idempotency-Key": "make-key-1"}
    first = client.post("/api/v1/api-keys", json=body, headers=headers)
    again = client.post("/api/v1/api-keys", json=body, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json["id"] == first.json["id"] and again.json["key"] == first.json["key"]
    assert again.headers["Idempotent-Replayed"] == "true" and again.headers["Location"] == first.headers["Location"]
    with db.new_session() as session:
        assert len(session.scalars(select(ApiKey)).all()) == 1
    problem(client.post("/api/v1/api-keys", json=body | {"name": "other"}, headers=headers), 422)


def test_a_stored_reply_never_holds_the_key_in_plaintext(client, auth, db):
    created = client.post(
        "/api/v1/api-keys",
        json={"name": "sealed", "permissions": ["customers.view"]},
        headers=auth | {"Idempotency-Key": "make-key-2"},
    ).json
    secret = created["key"].split(".", 1)[1]
    with db.new_session() as session:
        rows = session.scalars(select(IdempotencyRecord)).all()
        stored = json.dumps([[r.response_body, r.response_headers, r.request_hash] for r in rows])
    assert rows and secret not in stored and created["key"] not in stored and "customers.view" not in stored


@pytest.mark.parametrize(
    "path,body",
    [
        ("/api/v1/users", {"username": "ivy", "password": PASSWORD}),
        ("/api/v1/roles", {"name": "Viewer", "permissions": ["customers.view"]}),
        ("/api/v1/locations", {"name": "East"}),
    ],
)
def test_every_gateway_create_is_idempotent(client, auth, path, body):
    headers = auth | {"Idempotency-Key": f"create{path}"}
    first = client.post(path, json=body, headers=headers)
    again = client.post(path, json=body, headers=headers)
    assert first.status_code == again.status_code == 201, again.get_data(as_text=True)
    assert again.json == first.json and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["ETag"] == first.headers["ETag"]


def test_a_password_reset_replay_runs_once(client, auth):
    user = client.post("/api/v1/users", json={"username": "rae", "password": PASSWORD}, headers=auth).json
    url = f"/api/v1/users/{user['id']}/password"
    headers = auth | {"Idempotency-Key": "reset-rae"}
    assert client.post(url, json={"password": "first-new-password"}, headers=headers).status_code == 204
    tokens = sign_in(client, "rae", "first-new-password")
    replay = client.post(url, json={"password": "first-new-password"}, headers=headers)
    assert replay.status_code == 204 and replay.headers["Idempotent-Replayed"] == "true"
    assert client.get("/api/v1/me", headers=bearer(tokens)).status_code == 200, "a replay ends no session"


def _stale_then_fresh(client, auth, url, change):
    read = client.get(url, headers=auth)
    assert read.status_code == 200 and read.headers["ETag"]
    etag = read.headers["ETag"]
    changed = client.patch(url, json=change, headers=auth | {"If-Match": etag})
    assert changed.status_code == 200 and changed.headers["ETag"] != etag
    stale = problem(client.patch(url, json=change, headers=auth | {"If-Match": etag}), 412)
    assert stale["type"] == "urn:vigil:problem:stale-etag"
    return changed.headers["ETag"]


def test_users_roles_and_locations_honour_if_match(client, auth):
    user = client.post("/api/v1/users", json={"username": "una", "password": PASSWORD}, headers=auth)
    etag = _stale_then_fresh(client, auth, user.headers["Location"], {"name": "Una"})
    problem(client.patch(user.headers["Location"], json={"name": "Stale"}, headers=auth | {"If-Match": '"1.1"'}), 412)
    assert client.get(user.headers["Location"], headers=auth).json["name"] == "Una", "a 412 changes nothing"
    sign_in(client, "una", PASSWORD)
    assert client.get(user.headers["Location"], headers=auth).headers["ETag"] == etag, "a sign-in is not an edit"

    role = client.post("/api/v1/roles", json={"name": "R", "permissions": []}, headers=auth)
    role_etag = _stale_then_fresh(client, auth, role.headers["Location"], {"description": "d"})
    problem(client.delete(role.headers["Location"], headers=auth | {"If-Match": role.headers["ETag"]}), 412)
    assert client.delete(role.headers["Location"], headers=auth | {"If-Match": role_etag}).status_code == 204

    location = client.post("/api/v1/locations", json={"name": "West"}, headers=auth)
    _stale_then_fresh(client, auth, location.headers["Location"], {"phone": "555"})


def test_api_key_revocation_honours_if_match(client, auth, db):
    created = client.post("/api/v1/api-keys", json={"name": "k", "permissions": ["customers.view"]}, headers=auth)
    url = created.headers["Location"]
    problem(client.delete(url, headers=auth | {"If-Match": '"999.9"'}), 412)
    assert client.get(url, headers=auth).json["revoked_at"] is None
    assert client.delete(url, headers=auth | {"If-Match": created.headers["ETag"]}).status_code == 204


def test_versions_count_edits_only(client, auth, db):
    user = client.post("/api/v1/users", json={"username": "vic", "password": PASSWORD}, headers=auth).json
    client.post("/api/v1/auth/token", json={"username": "vic", "password": "wrong"})
    sign_in(client, "vic", PASSWORD)
    with db.new_session() as session:
        assert session.get(User, user["id"]).version == 1
