"""``Idempotency-Key`` outside a service runtime, and what its table holds: never a plaintext reply."""

import hashlib
import json

import pytest
from conftest import messaging
from flask import Flask, g, jsonify, request

from vigil_shared.crypto import FieldCipher, generate_key
from vigil_shared.errors import register_error_handlers
from vigil_shared.idempotency import idempotent, register_idempotency
from vigil_shared.identity import Identity

SSN, PIN = "123-45-6789", "8642"


def make_app(db, cipher) -> Flask:
    app = Flask("idempotency-test")
    register_error_handlers(app)
    register_idempotency(app, db, messaging.IdempotencyRecord, cipher)
    made = []

    @app.before_request
    def _identity():
        g.identity = Identity(subject="7", username="clerk")

    @app.post("/things")
    @idempotent
    def create():
        made.append(request.get_json())
        return jsonify(id=len(made), ssn=SSN, pin=PIN), 201, {"Location": f"/things/{len(made)}", "ETag": '"1.1"'}

    app.made = made
    return app


@pytest.fixture
def cipher():
    return FieldCipher([generate_key()], "index-key")


def test_a_replay_answers_the_first_response_and_runs_once(db, cipher):
    app = make_app(db, cipher)
    client = app.test_client()
    first = client.post("/things", json={"ssn": SSN}, headers={"Idempotency-Key": "k1"})
    again = client.post("/things", json={"ssn": SSN}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == again.status_code == 201 and len(app.made) == 1
    assert again.json == first.json and again.headers["Location"] == "/things/1" and again.headers["ETag"] == '"1.1"'
    assert again.headers["Idempotent-Replayed"] == "true"
    different = client.post("/things", json={"ssn": "987-65-4321"}, headers={"Idempotency-Key": "k1"})
    assert different.status_code == 422 and len(app.made) == 1


def test_stored_replies_and_fingerprints_reveal_nothing(db, cipher):
    """The reply (SSN, PIN) is stored encrypted, and the request fingerprint is keyed: a bare SHA-256
    of a body holding an SSN would let a reader of the table test every SSN offline."""
    client = make_app(db, cipher).test_client()
    body = json.dumps({"ssn": SSN}).encode()
    assert (
        client.post(
            "/things", data=body, content_type="application/json", headers={"Idempotency-Key": "k2"}
        ).status_code
        == 201
    )
    with db.new_session() as session:
        row = session.get(messaging.IdempotencyRecord, ("7", "k2"))
        stored = json.dumps([row.response_body, row.response_headers, row.request_hash])
    for secret in (SSN, "123456789", PIN, "/things/1"):
        assert secret not in stored
    assert set(row.response_headers) == {"sealed", "rights"}
    plain = hashlib.sha256(b"POST /things?\n" + body).hexdigest()
    assert row.request_hash != plain


def test_a_reply_sealed_under_keys_no_longer_held_is_refused_not_rerun(db, cipher):
    make_app(db, cipher).test_client().post("/things", json={}, headers={"Idempotency-Key": "k3"})
    other = make_app(db, FieldCipher([generate_key()], "index-key"))
    response = other.test_client().post("/things", json={}, headers={"Idempotency-Key": "k3"})
    assert response.status_code == 422 and "Idempotency-Key" in response.json["errors"]
    assert other.made == []


def test_a_reply_never_outlives_the_rights_it_was_made_under(db, cipher):
    """The first reply showed what the caller could read then (an SSN unmasked). Replayed after a right was
    taken away, it showed it again: a stored reply is shown only to the same caller holding at least the
    rights it was made under; otherwise 409, and the request is not run again."""
    app = make_app(db, cipher)
    rights = {"permissions": frozenset({"users.manage"}), "locations": {1: frozenset({"confidential.ssn.view"})}}

    @app.before_request
    def _rights():
        g.identity = Identity(subject="7", username="clerk", **rights)

    client = app.test_client()
    key = {"Idempotency-Key": "k-rights"}
    assert client.post("/things", json={}, headers=key).status_code == 201
    rights["locations"] = {1: frozenset({"confidential.ssn.view"}), 2: frozenset({"customers.view"})}
    assert client.post("/things", json={}, headers=key).headers["Idempotent-Replayed"] == "true"  # more is fine
    for lost in (
        {"permissions": frozenset(), "locations": {1: frozenset({"confidential.ssn.view"})}},
        {"permissions": frozenset({"users.manage"}), "locations": {1: frozenset()}},
        {"permissions": frozenset({"users.manage"}), "locations": {}},
    ):
        rights.update(lost)
        refused = client.post("/things", json={}, headers=key)
        assert refused.status_code == 409 and SSN not in refused.get_data(as_text=True)
        assert refused.mimetype == "application/problem+json"
    assert len(app.made) == 1
