import dataclasses
import json

import pytest
from sqlalchemy import select

from vigil_property.app import program
from vigil_property.models import KnownCustomer, Property, PropertyHistory
from vigil_shared.crypto import FieldCipher, generate_key
from vigil_shared.errors import UNAVAILABLE, Problem
from vigil_shared.identity import Identity
from vigil_shared.runtime import rotate_keys
from vigil_shared.testing import UNKNOWN_ID, assert_hidden, identity_with, unknown_path

HOME = {"account_number": "A-1001", "address": "12 Elm Street", "city": "Ottawa", "postal_code": "K1A 0B1"}
FULL = HOME | {
    "pin": "4821",
    "type": "Residential",
    "system_type": "DSC 1832 + CCTV",
    "monitoring_status": "active",
    "notes": "Dog on premises.",
    "access": {
        "managed_by": "letting_agent",
        "name": "Maple Lettings",
        "phone": "613-555-0101",
        "email": "keys@maple.example",
        "notes": "Key safe left of the gate, code with the agent.",
    },
}
CODES_VIEW = "confidential.installation_codes.view"
CODES_MODIFY = "confidential.installation_codes.modify"


@pytest.fixture
def create(api, known, customer_service):
    def make(customer_id=7, body=None, location_id=1, client=None):
        if customer_id not in customer_service.customers:
            customer_service.customers[customer_id] = location_id
        response = (client or api).post(f"/api/v1/customers/{customer_id}/properties", json=body or HOME)
        assert response.status_code == 201, response.json
        return response.json

    return make


def test_create_with_every_field_and_read_it_back(api, known, customer_service, outbox):
    known(7)
    created = api.post("/api/v1/customers/7/properties", json=FULL | {"address": "  12 Elm Street "})
    assert created.status_code == 201, created.json
    body = created.json
    assert body["customer_id"] == 7 and body["location_id"] == 1 and body["address"] == "12 Elm Street"
    assert body["type"] == "residential" and body["monitoring_status"] == "active" and body["active"] is True
    assert body["pin"] == "4821" and body["access"] == FULL["access"] and body["deactivated_at"] is None
    assert body["created_at"].endswith("Z")
    assert created.headers["Location"].endswith(f"/api/v1/properties/{body['id']}")
    read = api.get(f"/api/v1/properties/{body['id']}")
    assert read.status_code == 200 and read.json == body
    assert read.headers["ETag"] == created.headers["ETag"] == f'"{body["id"]}.1"'
    assert customer_service.asked == [7]  # a create confirms the replica with the customer service
    assert outbox() == [("property.created", {"property_id": body["id"], "customer_id": 7, "account_number": "A-1001"})]


def test_a_read_is_the_json_the_property_schema_would_dump(api, known):
    """The read dumps its row without marshmallow (a read's CPU): the JSON must be the schema's own, as the
    writes (dumped by ``PropertySchema``) answer it, every kind of field set (a timestamp, the nested access)."""
    known(7)
    property_id = api.post("/api/v1/customers/7/properties", json=FULL).json["id"]
    deactivated = api.post(f"/api/v1/properties/{property_id}/deactivate", json={"reason": "moved out"})
    assert deactivated.status_code == 200 and deactivated.json["deactivated_at"], deactivated.json
    read = api.get(f"/api/v1/properties/{property_id}")
    assert read.json == deactivated.json and list(read.json) == list(deactivated.json)
    assert read.headers["ETag"] == deactivated.headers["ETag"] == f'"{property_id}.2"'
    assert read.headers["Content-Type"] == deactivated.headers["Content-Type"]
    masked = api.as_(identity_with("properties.view")).get(f"/api/v1/properties/{property_id}")
    assert masked.json == deactivated.json | {"pin": "***"}


def test_a_read_survives_connections_the_database_dropped(api, known, runtime):
    """The read runs on a pooled autocommit connection without a liveness probe: connections the server
    ended (a restart) are replaced, the first read retrying once, never a 500."""
    known(7)
    property_id = api.post("/api/v1/customers/7/properties", json=FULL).json["id"]
    assert api.get(f"/api/v1/properties/{property_id}").status_code == 200  # the read pool holds a connection
    db = runtime.db
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:  # every other connection of this database, as a restart would
            ended = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            ).scalar()
        assert ended >= 1
    for _ in range(3):
        read = api.get(f"/api/v1/properties/{property_id}")
        assert read.status_code == 200 and read.json["id"] == property_id, read.get_data(as_text=True)


def test_defaults_pin_0000_and_active_monitoring(api, known):
    known(7)
    body = api.post("/api/v1/customers/7/properties", json={}).json
    assert body["pin"] == "0000" and body["monitoring_status"] == "active" and body["type"] is None
    assert body["access"] == {"managed_by": None, "name": None, "phone": None, "email": None, "notes": None}


def test_the_pin_is_never_stored_in_clear(api, session, known):
    known(7)
    property_id = api.post("/api/v1/customers/7/properties", json={"pin": "4821"}).json["id"]
    other_id = api.post("/api/v1/customers/7/properties", json={"pin": "4821"}).json["id"]
    row, other = session.get(Property, property_id), session.get(Property, other_id)
    stored = [row.pin_salt, row.pin_hash, row.pin_encrypted]
    assert all(value and "4821" not in value for value in stored)
    assert row.pin_hash != other.pin_hash  # equal PINs do not look equal


def test_pin_is_masked_without_the_confidential_permission_and_audited_with_it(api, known):
    known(7)
    property_id = api.post("/api/v1/customers/7/properties", json=FULL).json["id"]
    clerk = api.as_(identity_with("properties.view"))
    masked = clerk.get(f"/api/v1/properties/{property_id}")
    assert masked.json["pin"] == "***" and "X-Vigil-Confidential-Reads" not in masked.headers
    listed = clerk.get("/api/v1/customers/7/properties")
    assert [item["pin"] for item in listed.json["items"]] == ["***"]
    allowed = api.as_(identity_with("properties.view", CODES_VIEW))
    in_list = allowed.get("/api/v1/customers/7/properties")
    assert in_list.json["items"][0]["pin"] == "***" and "X-Vigil-Confidential-Reads" not in in_list.headers
    clear = allowed.get(f"/api/v1/properties/{property_id}")
    assert clear.json["pin"] == "4821"
    assert json.loads(clear.headers["X-Vigil-Confidential-Reads"]) == [
        {"target_type": "property", "target_id": str(property_id), "fields": ["pin"]}
    ]
    elsewhere = api.as_(
        Identity(
            subject="u9",
            username="split",
            locations={1: frozenset({"properties.view"}), 2: frozenset({"properties.view", CODES_VIEW})},
        )
    )
    assert elsewhere.get(f"/api/v1/properties/{property_id}").json["pin"] == "***"  # the right, but elsewhere


@pytest.mark.parametrize("pin", ["123", "12345", "12a4", "", 1234, None])
def test_pin_must_be_exactly_four_digits(api, known, pin):
    known(7)
    response = api.post("/api/v1/customers/7/properties", json={"pin": pin})
    assert response.status_code == 422 and set(response.json["errors"]) == {"pin"}


def test_type_and_status_choices(api, known):
    known(7)
    assert api.post("/api/v1/customers/7/properties", json={"type": "COMMERCIAL"}).json["type"] == "commercial"
    assert api.post("/api/v1/customers/7/properties", json={"type": ""}).json["type"] is None
    bad = api.post("/api/v1/customers/7/properties", json={"type": "castle", "monitoring_status": "paused"})
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"type", "monitoring_status"}
    nested = api.post("/api/v1/customers/7/properties", json={"access": {"managed_by": "tenant", "gate": "1"}})
    assert nested.status_code == 422 and set(nested.json["errors"]) == {"access.gate"}


def test_replica_miss_asks_the_customer_service_and_remembers_the_answer(api, session, customer_service):
    customer_service.customers[8] = 2
    response = api.post("/api/v1/customers/8/properties", json=HOME)
    assert response.status_code == 201 and response.json["location_id"] == 2
    assert customer_service.asked == [8]
    known = session.get(KnownCustomer, 8)
    assert known.deleted is False and known.location_id == 2
    assert api.get("/api/v1/customers/8/properties").status_code == 200
    assert customer_service.asked == [8]  # a read uses the replica
    assert api.post("/api/v1/customers/8/properties", json={"address": "2 Oak Road"}).status_code == 201
    assert customer_service.asked == [8, 8]  # a create confirms it


def test_a_replica_entry_without_location_is_completed_by_asking_once(api, session, known, customer_service):
    known(9, location_id=None)
    customer_service.customers[9] = 1
    assert api.post("/api/v1/customers/9/properties", json={}).status_code == 201
    assert session.get(KnownCustomer, 9).location_id == 1
    api.get("/api/v1/customers/9/properties")
    assert customer_service.asked == [9]


def test_customer_unknown_to_the_customer_service_is_a_validation_problem(api, session, customer_service):
    response = api.post("/api/v1/customers/9/properties", json=HOME)
    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json["errors"] == {"customer_id": ["No such customer."]}
    assert session.scalars(select(Property)).all() == []
    assert session.scalars(select(KnownCustomer)).all() == []


def test_customer_service_unavailable_answers_503(api, session, customer_service):
    customer_service.failure = Problem(503, "down", type=UNAVAILABLE)
    response = api.post("/api/v1/customers/9/properties", json=HOME)
    assert response.status_code == 503 and response.json["status"] == 503
    assert response.headers["Content-Type"] == "application/problem+json"
    assert session.scalars(select(Property)).all() == []


def test_deleted_customer_is_refused_without_asking(api, known, customer_service):
    known(10, deleted=True)
    response = api.post("/api/v1/customers/10/properties", json=HOME)
    assert response.status_code == 422 and response.json["errors"] == {"customer_id": ["No such customer."]}
    assert customer_service.asked == []


def test_account_number_is_unique(api, known, customer_service):
    known(7)
    known(8)
    first = api.post("/api/v1/customers/7/properties", json=HOME).json
    again = api.post("/api/v1/customers/8/properties", json={"account_number": " A-1001 "})
    assert again.status_code == 409
    assert again.headers["Content-Type"] == "application/problem+json"
    assert again.json["errors"] == {"account_number": ["Already in use."]}
    other = api.post("/api/v1/customers/8/properties", json={"account_number": None}).json
    assert api.post("/api/v1/customers/8/properties", json={}).status_code == 201  # many without a number
    taken = api.patch(f"/api/v1/properties/{other['id']}", json={"account_number": "A-1001"})
    assert taken.status_code == 409 and taken.json["errors"] == {"account_number": ["Already in use."]}
    same = api.patch(f"/api/v1/properties/{first['id']}", json={"account_number": "A-1001"})
    assert same.status_code == 200 and same.headers["ETag"] == f'"{first["id"]}.1"'  # no change, no new version


def test_validation_errors_name_the_field(api, known, customer_service):
    known(7)
    response = api.post(
        "/api/v1/customers/7/properties", json={"account_number": "x" * 41, "city": 5, "customer_id": 3, "extra": 1}
    )
    assert response.status_code == 422
    assert response.json["type"] == "urn:vigil:problem:validation"
    assert set(response.json["errors"]) == {"account_number", "city", "customer_id", "extra"}
    assert response.json["errors"]["customer_id"] == ["Read-only: set by the server or by its own operation."]
    assert response.json["errors"]["extra"] == ["Unknown field."]
    assert api.post("/api/v1/customers/7/properties", data="{", content_type="application/json").status_code == 400
    assert api.post("/api/v1/customers/7/properties", json=[HOME]).status_code == 422
    assert api.post("/api/v1/customers/7/properties", data="x", content_type="text/plain").status_code == 415


def test_patch_changes_fields_records_history_and_events(api, session, create, outbox):
    created = create(body=FULL)
    path = f"/api/v1/properties/{created['id']}"
    changed = api.patch(
        path,
        json={
            "monitoring_status": "Suspended",
            "account_number": "A-2002",
            "access": {"phone": "613-555-0199"},
            "notes": "Dog on premises.",
        },
        headers={"If-Match": f'"{created["id"]}.1"'},
    )
    assert changed.status_code == 200, changed.json
    body = changed.json
    assert body["monitoring_status"] == "suspended" and body["account_number"] == "A-2002"
    assert body["access"] == FULL["access"] | {"phone": "613-555-0199"}
    assert changed.headers["ETag"] == f'"{created["id"]}.2"'
    entries = api.get(f"{path}/history").json["items"]
    assert [(e["action"], e["field"], e["old_value"], e["new_value"]) for e in entries] == [
        ("updated", "monitoring_status", "active", "suspended"),
        ("updated", "account_number", "A-1001", "A-2002"),
        ("updated", "access.phone", "613-555-0101", "613-555-0199"),
        ("created", None, None, None),
    ]
    assert {e["actor_name"] for e in entries} == {"admin"} and {e["source"] for e in entries} == {"api"}
    assert outbox()[1:] == [
        (
            "property.updated",
            {
                "property_id": created["id"],
                "customer_id": 7,
                "account_number": "A-2002",
                "changed": ["access.phone", "account_number", "monitoring_status"],
                "central_station": None,  # not linked to a central station
            },
        ),
        (
            "property.monitoring_changed",
            {"property_id": created["id"], "customer_id": 7, "old_status": "active", "new_status": "suspended"},
        ),
    ]


def test_a_stale_if_match_changes_nothing(api, create):
    created = create()
    path = f"/api/v1/properties/{created['id']}"
    api.patch(path, json={"city": "Kanata"})
    stale = api.patch(path, json={"city": "Nepean"}, headers={"If-Match": f'"{created["id"]}.1"'})
    assert stale.status_code == 412 and stale.headers["ETag"] == f'"{created["id"]}.2"'
    assert api.get(path).json["city"] == "Kanata"


def test_mass_assignment_is_refused_and_changes_nothing(api, create):
    created = create()
    path = f"/api/v1/properties/{created['id']}"
    for field, value in [
        ("id", 99),
        ("customer_id", 8),
        ("location_id", 2),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("active", False),
        ("version", 7),
        ("pin_hash", "x"),
        ("updated_at", None),
    ]:
        response = api.patch(path, json={"city": "Elsewhere", field: value})
        assert response.status_code == 422, (field, response.json)
        assert list(response.json["errors"]) == [field]
    assert api.get(path).json == created


def test_changing_the_pin_needs_the_confidential_permission(api, session, create):
    created = create(body=FULL)
    path = f"/api/v1/properties/{created['id']}"
    editor = api.as_(identity_with("properties.view", "properties.modify"))
    refused = editor.patch(path, json={"pin": "4821", "city": "Kanata"})  # even the same PIN: no oracle
    assert refused.status_code == 403 and refused.json["errors"] == {
        "pin": [f"You need the '{CODES_MODIFY}' permission to set this field."]
    }
    assert refused.json["permission"] == CODES_MODIFY
    assert api.get(path).json["city"] == "Ottawa"
    keeper = api.as_(identity_with("properties.view", "properties.modify", CODES_MODIFY, "history.view"))
    changed = keeper.patch(path, json={"pin": "7777"})
    assert changed.status_code == 200 and changed.json["pin"] == "***"
    assert api.get(path).json["pin"] == "7777"
    [entry, _] = keeper.get(f"{path}/history").json["items"]
    assert (entry["field"], entry["old_value"], entry["new_value"]) == ("pin", "***", "***")
    assert "7777" not in json.dumps([h.new_value for h in session.scalars(select(PropertyHistory))])


def test_deactivate_freezes_until_reactivated(api, create, outbox):
    created = create()
    path = f"/api/v1/properties/{created['id']}"
    off = api.post(f"{path}/deactivate", json={"reason": "Moved out"})
    assert off.status_code == 200 and off.json["active"] is False and off.json["deactivated_at"].endswith("Z")
    assert api.get(path).json["active"] is False  # still visible, marked
    assert [p["active"] for p in api.get("/api/v1/customers/7/properties").json["items"]] == [False]
    assert api.get("/api/v1/customers/7/properties?active=true").json["total"] == 0
    frozen = api.patch(path, json={"city": "Kanata"})
    assert frozen.status_code == 409 and frozen.json["state"] == "inactive"
    assert api.post(f"{path}/deactivate").status_code == 409
    assert api.post(f"{path}/transfer", json={"to_customer_id": 8}).status_code == 409
    on = api.post(f"{path}/reactivate")
    assert on.status_code == 200 and on.json["active"] is True and on.json["deactivated_at"] is None
    assert api.post(f"{path}/reactivate").status_code == 409
    assert api.patch(path, json={"city": "Kanata"}).status_code == 200
    assert [t for t, _ in outbox()] == [
        "property.created",
        "property.deactivated",
        "property.reactivated",
        "property.updated",
    ]
    history = api.get(f"{path}/history").json["items"]
    assert [(e["action"], e["reason"]) for e in history[1:3]] == [("reactivated", None), ("deactivated", "Moved out")]


def test_state_changes_honour_if_match(api, create):
    created = create()
    stale = api.post(f"/api/v1/properties/{created['id']}/deactivate", headers={"If-Match": '"1.9"'})
    assert stale.status_code == 412
    assert api.get(f"/api/v1/properties/{created['id']}").json["active"] is True


def test_transfer_moves_the_property_to_another_customer(api, create, known, outbox):
    created = create(body=HOME)
    known(8)
    path = f"/api/v1/properties/{created['id']}"
    moved = api.post(f"{path}/transfer", json={"to_customer_id": 8, "reason": "House sold"})
    assert moved.status_code == 200, moved.json
    assert moved.json["customer_id"] == 8
    assert api.get("/api/v1/customers/7/properties").json["total"] == 0
    assert [p["id"] for p in api.get("/api/v1/customers/8/properties").json["items"]] == [created["id"]]
    [entry, _] = api.get(f"{path}/history").json["items"]
    assert (entry["action"], entry["field"], entry["old_value"], entry["new_value"], entry["reason"]) == (
        "transferred",
        "customer_id",
        "7",
        "8",
        "House sold",
    )
    assert outbox("property.transferred") == [
        (
            "property.transferred",
            {
                "property_id": created["id"],
                "from_customer_id": 7,
                "to_customer_id": 8,
                "account_number": "A-1001",
                "actor_id": "1",
                "actor_name": "admin",
                "source": "api",
                "reason": "House sold",
            },
        )
    ]


def test_transfer_is_refused_for_bad_targets(api, create, known):
    created = create()
    path = f"/api/v1/properties/{created['id']}/transfer"
    known(10, deleted=True)
    known(11, location_id=2)
    for target in (7, 10, 99):
        response = api.post(path, json={"to_customer_id": target})
        assert response.status_code == 422 and set(response.json["errors"]) == {"to_customer_id"}, target
    assert api.post(path, json={}).json["errors"] == {"to_customer_id": ["Missing data for required field."]}
    local = api.as_(identity_with("properties.view", "properties.modify", locations=(1,)))
    refused = local.post(path, json={"to_customer_id": 11})  # another office's customer: as an unknown one
    assert refused.status_code == 422 and set(refused.json["errors"]) == {"to_customer_id"}
    assert api.get(f"/api/v1/properties/{created['id']}").json["customer_id"] == 7


def test_requests_without_a_gateway_identity_are_refused(api):
    anonymous = api.as_(None)
    for response in (
        anonymous.get("/api/v1/properties/1"),
        anonymous.get("/api/v1/customers/1/properties"),
        anonymous.post("/api/v1/customers/1/properties", json=HOME),
    ):
        assert response.status_code == 401 and response.headers["Content-Type"] == "application/problem+json"


def test_permissions_are_enforced(api, known):
    known(7)
    viewer = api.as_(identity_with("properties.view", username="viewer"))
    assert viewer.get("/api/v1/customers/7/properties").status_code == 200
    refused = viewer.post("/api/v1/customers/7/properties", json=HOME)
    assert refused.status_code == 403 and refused.json["permission"] == "properties.create"
    nobody = api.as_(identity_with(username="nobody"))
    assert nobody.get("/api/v1/properties/1").json["permission"] == "properties.view"
    property_id = api.post("/api/v1/customers/7/properties", json={}).json["id"]
    assert viewer.patch(f"/api/v1/properties/{property_id}", json={"city": "X"}).status_code == 403
    assert viewer.post(f"/api/v1/properties/{property_id}/deactivate").status_code == 403
    assert viewer.get(f"/api/v1/properties/{property_id}/history").json["permission"] == "history.view"


def test_a_record_in_another_location_answers_like_an_unknown_id_and_lists_leave_it_out(api, known):
    known(7, location_id=1)
    known(8, location_id=2)
    here = api.post("/api/v1/customers/7/properties", json={"account_number": "HERE"}).json
    there = api.post("/api/v1/customers/8/properties", json={"account_number": "THERE"}).json
    clerk = api.as_(identity_with("properties.view", "properties.create", "properties.modify", "history.view"))
    assert clerk.get(f"/api/v1/properties/{here['id']}").status_code == 200
    for method, path, body, record_id in (
        ("GET", f"/api/v1/properties/{there['id']}", None, there["id"]),
        ("PATCH", f"/api/v1/properties/{there['id']}", {"city": "X"}, there["id"]),
        ("POST", f"/api/v1/properties/{there['id']}/deactivate", None, there["id"]),
        ("GET", f"/api/v1/properties/{there['id']}/history", None, there["id"]),
        ("GET", "/api/v1/customers/8/properties", None, 8),
    ):
        unknown = unknown_path(path, record_id)
        assert_hidden(clerk.request(method, path, json=body), clerk.request(method, unknown, json=body))
    # a create under a customer answers an unknown one's 422 "No such customer"
    create_there = clerk.post("/api/v1/customers/8/properties", json={})
    assert_hidden(create_there, clerk.post(f"/api/v1/customers/{UNKNOWN_ID}/properties", json={}), 422)
    assert [p["account_number"] for p in clerk.get("/api/v1/properties").json["items"]] == ["HERE"]
    assert clerk.get("/api/v1/properties?account_number=THERE").json["total"] == 0
    assert [p["account_number"] for p in api.get("/api/v1/properties?sort=-id").json["items"]] == ["THERE", "HERE"]
    assert api.get(f"/api/v1/properties/{there['id']}").json["city"] is None


def test_property_of_a_customer_with_unknown_location_is_visible_to_no_user(api, known, customer_service):
    known(7, location_id=None)
    customer_service.customers[7] = None  # the customer service does not know the location either
    refused = api.post("/api/v1/customers/7/properties", json={})
    assert_hidden(refused, api.post(f"/api/v1/customers/{UNKNOWN_ID}/properties", json={}), 422)
    assert_hidden(api.get("/api/v1/customers/7/properties"), api.get(f"/api/v1/customers/{UNKNOWN_ID}/properties"))


def test_search_filters(api, create):
    create(body={"account_number": "ACC-1", "city": "Ottawa", "type": "commercial"})
    create(body={"account_number": "ACC-2", "city": "Toronto", "monitoring_status": "cancelled"})
    assert [p["account_number"] for p in api.get("/api/v1/properties?q=toron").json["items"]] == ["ACC-2"]
    assert api.get("/api/v1/properties?monitoring_status=cancelled").json["total"] == 1
    assert api.get("/api/v1/properties?type=commercial").json["items"][0]["account_number"] == "ACC-1"
    assert api.get("/api/v1/properties?customer_id=7&sort=-city").json["items"][0]["city"] == "Toronto"
    assert api.get("/api/v1/properties?sort=nope").status_code == 422


def test_the_list_by_ids_shows_only_what_the_reader_may_see(api, known):
    """``id=1&id=2`` (the gateway's one read for many webhook payloads): the same bodies as single reads
    for a reader without confidential views, records of other locations left out, at most 100 ids."""
    known(7, location_id=1)
    known(8, location_id=2)
    here = api.post("/api/v1/customers/7/properties", json={"account_number": "HERE"}).json
    there = api.post("/api/v1/customers/8/properties", json={"account_number": "THERE"}).json
    clerk = api.as_(identity_with("properties.view"))
    listed = clerk.get(f"/api/v1/properties?id={here['id']}&id={there['id']}&id={UNKNOWN_ID}").json
    assert listed["items"] == [clerk.get(f"/api/v1/properties/{here['id']}").json]
    both = api.get(f"/api/v1/properties?id={here['id']}&id={there['id']}").json["items"]
    assert [p["id"] for p in both] == [here["id"], there["id"]]
    assert api.get("/api/v1/properties?" + "&".join(f"id={n}" for n in range(101))).status_code == 422
    assert api.get("/api/v1/properties?id=x").status_code == 422


def test_idempotency_key_replays_the_first_answer(api, known, session):
    known(7)
    headers = {"Idempotency-Key": "create-elm-1"}
    first = api.post("/api/v1/customers/7/properties", json=HOME, headers=headers)
    again = api.post("/api/v1/customers/7/properties", json=HOME, headers=headers)
    assert first.status_code == again.status_code == 201 and again.json == first.json
    assert again.headers["Idempotent-Replayed"] == "true"
    assert len(session.scalars(select(Property)).all()) == 1
    other = api.post("/api/v1/customers/7/properties", json={"city": "Other"}, headers=headers)
    assert other.status_code == 422 and set(other.json["errors"]) == {"Idempotency-Key"}


def test_missing_property_is_404_problem(api):
    response = api.get("/api/v1/properties/12345")
    assert response.status_code == 404 and response.headers["Content-Type"] == "application/problem+json"


def test_list_is_paginated_per_customer_with_links(api, known):
    known(7)
    known(8)
    for i in range(23):
        api.post("/api/v1/customers/7/properties", json={"address": f"{i} Main Street"})
    api.post("/api/v1/customers/8/properties", json={"address": "Elsewhere"})
    first = api.get("/api/v1/customers/7/properties")
    assert first.status_code == 200
    assert first.json["total"] == 23 and first.json["page"] == 1 and first.json["per_page"] == 20
    assert [p["address"] for p in first.json["items"][:2]] == ["0 Main Street", "1 Main Street"]
    assert 'rel="next"' in first.headers["Link"] and 'rel="prev"' not in first.headers["Link"]
    second = api.get("/api/v1/customers/7/properties?page=2")
    assert len(second.json["items"]) == 3 and 'rel="prev"' in second.headers["Link"]
    assert api.get("/api/v1/customers/8/properties").json["total"] == 1
    assert api.get("/api/v1/customers/7/properties?per_page=101").status_code == 422


def test_an_unknown_customer_s_properties_answer_404(api, customer_service):
    response = api.get("/api/v1/customers/99/properties")
    assert (
        response.status_code == 404
        and response.json["detail"] == "The customer does not exist or is not visible to you."
    )


def test_every_operation_documents_its_permission(app):
    spec = app.extensions["vigil_api"].spec.to_dict()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method in ("get", "post", "patch", "put", "delete"):
                assert operation.get("x-vigil-permission"), f"{method.upper()} {path}"
                if method == "post" and not path.startswith("/api/v1/ops/"):
                    names = [p["name"] for p in operation.get("parameters", [])]
                    assert "Idempotency-Key" in names, f"POST {path}"


def test_web_readyz_checks_the_database_and_workers_the_broker_too(api, runtime):
    response = api.get("/readyz")
    assert response.status_code == 200 and response.json["checks"] == {"database": {"status": "ok"}}
    assert set(runtime.ready_checks()) == {"database", "broker"}  # the worker's and the relay's /readyz


def test_rotate_keys_re_encrypts_pins_under_the_new_key(app, api, known, session):
    known(7)
    property_id = api.post("/api/v1/customers/7/properties", json={"pin": "2468"}).json["id"]
    runtime = app.extensions["vigil_runtime"]
    old_keys = runtime.settings.encryption_keys
    new_key = generate_key()
    rotated_runtime = dataclasses.replace(runtime, cipher=FieldCipher([new_key, *old_keys], "test-blind-index-key"))
    assert rotate_keys(rotated_runtime, program.encrypted_columns) == 1
    session.expire_all()
    token = session.get(Property, property_id).pin_encrypted
    assert FieldCipher([new_key], "unused").decrypt(token) == "2468"


def test_another_locations_record_is_refused_before_the_body_is_read(api, known):
    """The route matrix sends `{}` everywhere: an outsider gets 403, never a 422 about the body."""
    known(8, location_id=2)
    there = api.post("/api/v1/customers/8/properties", json={}).json["id"]
    appointment = api.post(
        f"/api/v1/properties/{there}/appointments",
        json={"type": "service", "starts_at": "2026-12-01T09:00:00Z", "ends_at": "2026-12-01T10:00:00Z"},
    ).json["id"]
    outsider = api.as_(
        identity_with(
            "properties.view",
            "properties.create",
            "properties.modify",
            "equipment.modify",
            "appointments.modify",
            locations=(1,),
        )
    )
    for path, record_id, status in (
        (f"/api/v1/properties/{there}/transfer", there, 404),
        (f"/api/v1/properties/{there}/systems", there, 404),
        (f"/api/v1/properties/{there}/equipment", there, 404),
        (f"/api/v1/properties/{there}/appointments", there, 404),
        (f"/api/v1/appointments/{appointment}/cancel", appointment, 404),
        ("/api/v1/customers/8/properties", 8, 422),  # an unknown customer's "No such customer"
    ):
        hidden = outsider.post(path, json={"unknown": 1})
        assert_hidden(hidden, outsider.post(unknown_path(path, record_id), json={"unknown": 1}), status)
    path = f"/api/v1/properties/{there}"
    assert_hidden(outsider.patch(path, json={"id": 1}), outsider.patch(unknown_path(path, there), json={"id": 1}))


def test_the_system_kind_catalog_is_readable_by_any_signed_in_caller(api):
    kind = api.post("/api/v1/system-kinds", json={"name": "Hikvision NVR"}).json
    anyone = api.as_(identity_with(username="nobody"))
    assert anyone.get("/api/v1/system-kinds").json["total"] == 1
    assert anyone.get(f"/api/v1/system-kinds/{kind['id']}").status_code == 200
    assert anyone.delete(f"/api/v1/system-kinds/{kind['id']}").status_code == 403


def test_a_transfer_never_unmasks_the_codes(api, create, known):
    """An operation never reveals a value the caller cannot see at its source: moving a property from
    an office where its PIN and panel passwords are masked for the caller to one where they are not is
    refused; the same move by someone who sees them at the source goes through."""
    created = create(body=FULL)
    known(11, location_id=2)
    path = f"/api/v1/properties/{created['id']}/transfer"
    editing = frozenset({"properties.view", "properties.modify"})
    seeing = editing | {CODES_VIEW}
    mover = api.as_(Identity(subject="9", username="mover", locations={1: editing, 2: seeing}))
    refused = mover.post(path, json={"to_customer_id": 11})
    assert refused.status_code == 403 and refused.json["permission"] == CODES_VIEW, refused.json
    assert "to_customer_id" in refused.json["errors"] and "4821" not in refused.get_data(as_text=True)
    assert api.get(f"/api/v1/properties/{created['id']}").json["customer_id"] == 7
    seer = api.as_(Identity(subject="10", username="seer", locations={1: seeing, 2: seeing}))
    moved = seer.post(path, json={"to_customer_id": 11})
    assert moved.status_code == 200 and moved.json["pin"] == "4821"
