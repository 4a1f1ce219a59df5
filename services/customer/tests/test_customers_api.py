import re

from sqlalchemy import select

from vigil_customer.models import Customer, messaging
from vigil_shared.testing import identity_with
from vigil_shared.messaging.contracts import parse_event

ALICE = {"first_name": "Alice", "last_name": "Martin", "email": "Alice@Example.com", "phone": "613-555-1234"}


def outbox_events(session, event_type=None):
    rows = session.scalars(select(messaging.OutboxEvent).order_by(messaging.OutboxEvent.position)).all()
    return [r for r in rows if event_type is None or r.type == event_type]


def test_create_read_update_delete_cycle(api, session):
    created = api.post("/api/v1/customers", json=ALICE)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["email"] == "Alice@Example.com" and body["active"] is True
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", body["created_at"]), body["created_at"]
    assert created.headers["Location"].endswith(f"/api/v1/customers/{body['id']}")
    etag = created.headers["ETag"]

    read = api.get(f"/api/v1/customers/{body['id']}")
    assert read.status_code == 200 and read.headers["ETag"] == etag

    patched = api.patch(f"/api/v1/customers/{body['id']}", json={"phone": "613-555-9999"}, headers={"If-Match": etag})
    assert patched.status_code == 200 and patched.json["phone"] == "613-555-9999"
    assert patched.headers["ETag"] != etag

    deleted = api.delete(f"/api/v1/customers/{body['id']}")
    assert deleted.status_code == 204
    assert api.get(f"/api/v1/customers/{body['id']}").status_code == 404

    types = [e.type for e in outbox_events(session)]
    assert types == ["customer.created", "customer.updated", "customer.deleted"]
    deleted_event = outbox_events(session, "customer.deleted")[0]
    assert deleted_event.data == {"customer_id": body["id"]}


def test_events_follow_their_contracts(api, session):
    api.post("/api/v1/customers", json=ALICE)
    for row in outbox_events(session):
        event = parse_event({"id": row.event_id, "type": row.type, "version": row.version,
                             "occurred_at": row.occurred_at.isoformat(), "data": row.data, "source": "customer"})
        assert event.data["customer_id"] > 0


def test_email_is_unique_case_insensitively(api):
    assert api.post("/api/v1/customers", json=ALICE).status_code == 201
    again = api.post("/api/v1/customers", json=ALICE | {"email": "alice@EXAMPLE.com"})
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/problem+json"
    assert again.json["errors"] == {"email": ["Already in use."]}
    assert again.json["status"] == 409


def test_patch_to_an_email_in_use_is_refused_and_changes_nothing(api, session):
    api.post("/api/v1/customers", json=ALICE)
    bob = api.post("/api/v1/customers", json={"first_name": "Bob", "last_name": "Stone", "email": "bob@example.com"}).json
    refused = api.patch(f"/api/v1/customers/{bob['id']}", json={"email": "alice@example.com", "phone": "1"})
    assert refused.status_code == 409
    assert api.get(f"/api/v1/customers/{bob['id']}").json["phone"] is None


def test_stale_if_match_is_refused_with_412_and_changes_nothing(api):
    created = api.post("/api/v1/customers", json=ALICE)
    cid, etag = created.json["id"], created.headers["ETag"]
    assert api.patch(f"/api/v1/customers/{cid}", json={"first_name": "Alicia"}, headers={"If-Match": etag}).status_code == 200
    stale = api.patch(f"/api/v1/customers/{cid}", json={"first_name": "Ally"}, headers={"If-Match": etag})
    assert stale.status_code == 412
    assert api.delete(f"/api/v1/customers/{cid}", headers={"If-Match": etag}).status_code == 412
    assert api.get(f"/api/v1/customers/{cid}").json["first_name"] == "Alicia"


def test_validation_errors_name_the_field(api):
    response = api.post("/api/v1/customers", json={"first_name": "", "last_name": 12, "email": "nope", "extra": 1})
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    errors = response.json["errors"]
    assert set(errors) == {"first_name", "last_name", "email", "extra"}
    assert response.json["type"] == "urn:vigil:problem:validation"


def test_malformed_json_wrong_media_type_and_oversized_bodies(api, app):
    bad_json = api.post("/api/v1/customers", data="{not json", content_type="application/json")
    assert bad_json.status_code == 400 and bad_json.headers["Content-Type"] == "application/problem+json"
    wrong_type = api.post("/api/v1/customers", data="first_name=a", content_type="application/x-www-form-urlencoded")
    assert wrong_type.status_code == 415
    huge = api.post("/api/v1/customers", json={"first_name": "a" * (app.config["MAX_CONTENT_LENGTH"] + 10),
                                               "last_name": "b"})
    assert huge.status_code == 413 and huge.json["status"] == 413
    not_an_object = api.post("/api/v1/customers", json=[1, 2])
    assert not_an_object.status_code == 422


def test_requests_without_a_gateway_identity_are_refused(api):
    anonymous = api.as_(None)
    response = anonymous.get("/api/v1/customers")
    assert response.status_code == 401 and response.headers["Content-Type"] == "application/problem+json"
    forged = anonymous.get("/api/v1/customers", headers={"X-Vigil-Identity": "eyJhbGciOiJub25lIn0.e30."})
    assert forged.status_code == 401
    assert anonymous.get("/healthz").status_code == 200


def test_permissions_are_enforced(api):
    viewer = api.as_(identity_with("customers.view", username="viewer"))
    assert viewer.get("/api/v1/customers").status_code == 200
    refused = viewer.post("/api/v1/customers", json=ALICE)
    assert refused.status_code == 403 and refused.json["permission"] == "customers.create"


def test_list_is_paginated_with_links_and_filters(api):
    for i in range(25):
        api.post("/api/v1/customers", json={"first_name": f"Name{i:02d}", "last_name": "Smith",
                                             "active": i % 2 == 0})
    first = api.get("/api/v1/customers")
    assert first.json["total"] == 25 and first.json["per_page"] == 20 and len(first.json["items"]) == 20
    assert 'rel="next"' in first.headers["Link"] and 'rel="prev"' not in first.headers["Link"]
    second = api.get("/api/v1/customers?page=2")
    assert len(second.json["items"]) == 5 and 'rel="prev"' in second.headers["Link"]
    assert api.get("/api/v1/customers?q=name0").json["total"] == 10
    assert api.get("/api/v1/customers?active=false").json["total"] == 12
    assert api.get("/api/v1/customers?per_page=101").status_code == 422
    assert api.get("/api/v1/customers?sort=password").status_code == 422


def test_request_id_is_echoed_or_generated(api):
    assert api.get("/healthz", headers={"X-Request-ID": "abc-123"}).headers["X-Request-ID"] == "abc-123"
    assert len(api.get("/healthz").headers["X-Request-ID"]) == 32


def test_readyz_reports_database_and_broker(api):
    response = api.get("/readyz")
    assert response.status_code == 200
    assert set(response.json["checks"]) == {"database", "broker"}


def test_customer_rows_are_real(session, api):
    api.post("/api/v1/customers", json=ALICE)
    stored = session.scalars(select(Customer)).one()
    assert stored.email_key == "alice@example.com" and stored.version == 1


def test_operators_can_list_and_redeliver_outbox_events(api, session):
    api.post("/api/v1/customers", json=ALICE)
    listed = api.get("/api/v1/ops/customer/outbox?type=customer.created")
    assert listed.status_code == 200 and listed.json["total"] == 1
    event = listed.json["items"][0]
    assert event["published_at"] is None and event["data"]["customer_id"] > 0
    session.execute(messaging.OutboxEvent.__table__.update().values(published_at=messaging.OutboxEvent.occurred_at))
    session.commit()
    redelivered = api.post(f"/api/v1/ops/customer/outbox/{event['event_id']}/redeliver")
    assert redelivered.status_code == 202 and redelivered.json["published_at"] is None
    assert api.post("/api/v1/ops/customer/outbox/nope/redeliver").status_code == 404
    assert api.get("/api/v1/ops/customer/inbox/nope").status_code == 404
    clerk = api.as_(identity_with("customers.view", username="clerk"))
    assert clerk.get("/api/v1/ops/customer/outbox").status_code == 403


def test_idempotency_key_executes_a_post_once(api, session):
    headers = {"Idempotency-Key": "create-alice-1"}
    first = api.post("/api/v1/customers", json=ALICE, headers=headers)
    again = api.post("/api/v1/customers", json=ALICE, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json == first.json and again.headers["Location"] == first.headers["Location"]
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(outbox_events(session, "customer.created")) == 1
    different = api.post("/api/v1/customers", json=ALICE | {"first_name": "Other"}, headers=headers)
    assert different.status_code == 422 and "Idempotency-Key" in different.json["errors"]
    other_caller = api.as_(identity_with("customers.create", username="someone-else"))
    assert other_caller.post("/api/v1/customers", json=ALICE, headers=headers).status_code == 409  # email taken


def test_a_failed_post_releases_its_idempotency_key(api):
    headers = {"Idempotency-Key": "retry-me"}
    assert api.post("/api/v1/customers", json={"first_name": "A"}, headers=headers).status_code == 422
    assert api.post("/api/v1/customers", json={"first_name": "A"}, headers=headers).status_code == 422
    corrected = api.post("/api/v1/customers", json={"first_name": "A", "last_name": "B"}, headers=headers)
    assert corrected.status_code == 201, "the failed attempts released the key, so the corrected retry runs"
