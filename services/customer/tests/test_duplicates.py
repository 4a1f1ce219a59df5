"""Likely duplicates on create: one engine, four reasons, an explicit override."""

import re

from helpers import create, customer, outbox_events
from sqlalchemy import event, select
from sqlalchemy.engine import Engine

from vigil_customer import duplicates
from vigil_customer.models import Customer
from vigil_shared.testing import identity_with


def test_each_reason_is_reported_with_the_match(api):
    original = create(
        api,
        customer(
            first_name="Ann",
            last_name="Lee",
            primary_phone="801-555-0001",
            email="ann@example.com",
            ssn="123-45-6789",
            address_line1="12 Oak St.",
            zip="84601",
        ),
    )
    cases = {
        "phone": customer(first_name="X", primary_phone="+1 (801) 555-0001"),
        "email": customer(first_name="X", email="ANN@example.com"),
        "ssn": customer(first_name="X", ssn="123456789"),
        "name_address": customer(first_name="ann", last_name="LEE", address_line1="12 oak st", zip="84601"),
    }
    for reason, body in cases.items():
        response = api.post("/api/v1/customers", json=body)
        assert response.status_code == 409, reason
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json["type"] == "urn:vigil:problem:duplicates"
        assert response.json["matches"] == [
            {"id": original["id"], "name": "Ann Lee", "kind": "customer", "reasons": [reason]}
        ], reason


def test_several_reasons_and_several_matches(api):
    first = create(api, customer(primary_phone="801-555-0002", ssn="123-45-6789"))
    second = create(api, customer(primary_phone="801-555-0003", ssn="123-45-6789"))
    response = api.post(
        "/api/v1/customers", json=customer(primary_phone="801-555-0002", work_phone="801-555-0003", ssn="123-45-6789")
    )
    matches = response.json["matches"]
    assert [m["id"] for m in matches] == [first["id"], second["id"]]
    assert matches[0]["reasons"] == ["phone", "ssn"] and matches[1]["reasons"] == ["phone", "ssn"]


def test_the_override_creates_anyway_but_email_stays_unique(api, session):
    create(api, customer(primary_phone="801-555-0004", email="same@example.com"))
    assert api.post("/api/v1/customers", json=customer(primary_phone="801-555-0004")).status_code == 409
    forced = api.post("/api/v1/customers?allow_duplicates=true", json=customer(primary_phone="801-555-0004"))
    assert forced.status_code == 201
    still_unique = api.post("/api/v1/customers?allow_duplicates=true", json=customer(email="same@example.com"))
    assert still_unique.status_code == 409 and still_unique.json["errors"] == {"email": ["Already in use."]}
    assert len(outbox_events(session, "customer.created")) == 2


def test_matches_in_locations_you_cannot_view_reveal_no_id_and_no_field(api):
    hidden = create(api, customer(location_id=2, primary_phone="801-555-0005", email="hid@example.com"))
    creator = api.as_(identity_with("customers.view", "customers.create", locations=(1,)))
    response = creator.post("/api/v1/customers", json=customer(primary_phone="801-555-0005"))
    assert response.status_code == 409
    assert response.json["matches"] == [] and response.json["other_matches"] == 1
    assert hidden["id"] > 0 and "phone" not in response.text and "hid@" not in response.text
    extra = set(response.json) - {"type", "title", "status", "detail", "instance", "request_id"}
    assert extra == {"matches", "other_matches"}  # no id, name, kind, reason or field error


def test_a_guessed_ssn_is_never_confirmed_to_a_caller_who_sees_it_masked(api):
    """The attacker sees ``***-**-4893`` and tries the other five digits: no answer differs."""
    target = create(api, customer(location_id=1, ssn="123-45-4893", first_name="Vic", last_name="Tim"))
    elsewhere = create(api, customer(location_id=2, ssn="123-45-4893"))
    attacker = api.as_(identity_with("customers.view", "customers.create", locations=(1,)))
    assert attacker.get(f"/api/v1/customers/{target['id']}").json["ssn"] == "***-**-4893"
    right = attacker.post("/api/v1/customers", json=customer(ssn="123-45-4893"))
    wrong = attacker.post("/api/v1/customers", json=customer(ssn="123-45-4894"))
    assert right.status_code == wrong.status_code == 201  # nothing matched that the caller may see
    assert elsewhere["id"] != right.json["id"]
    # with SSN visibility on the record, the reason is named
    entitled = api.as_(identity_with("customers.view", "customers.create", "confidential.ssn.view", locations=(1,)))
    named = entitled.post("/api/v1/customers", json=customer(ssn="123-45-4893"))
    assert named.status_code == 409 and named.json["other_matches"] == 0
    assert named.json["matches"] == [
        {"id": target["id"], "name": "Vic Tim", "kind": "customer", "reasons": ["ssn"]},
        {"id": right.json["id"], "name": "Dana Reyes", "kind": "customer", "reasons": ["ssn"]},
    ]


def _statements_of(client, body) -> list[str]:
    """The statements a create runs, values left out (what its duration depends on)."""
    statements = []

    def seen(conn, cursor, statement, *args):
        statements.append(re.sub(r"\s+", " ", statement))

    event.listen(Engine, "before_cursor_execute", seen)
    try:
        response = client.post("/api/v1/customers", json=body)
    finally:
        event.remove(Engine, "before_cursor_execute", seen)
    assert response.status_code == 201, response.json
    return statements


def test_a_guessed_ssn_costs_the_statements_of_a_wrong_guess(api):
    """No timing tells a guessed SSN either: a create whose SSN only a record the caller may not see
    unmasked holds runs the very statements of one whose SSN nobody holds. (On PostgreSQL the
    ``INSERT``'s own duplicate check found the hidden match, and only then were the matches read: one
    statement and round trip more, so the right guess answered measurably slower.)"""
    create(api, customer(location_id=1, ssn="123-45-4893"))
    create(api, customer(location_id=2, ssn="123-45-4893"))
    attacker = api.as_(identity_with("customers.view", "customers.create", locations=(1,)))
    _statements_of(attacker, customer(first_name="Warm", ssn="123-45-1111"))  # definitions known, as a busy process
    right = _statements_of(attacker, customer(first_name="Right", ssn="123-45-4893"))
    wrong = _statements_of(attacker, customer(first_name="Wrong", ssn="123-45-4894"))
    assert right == wrong


def test_ssn_reasons_are_dropped_but_other_visible_reasons_still_listed(api):
    original = create(api, customer(primary_phone="801-555-0006", ssn="123-45-6789"))
    clerk = api.as_(identity_with("customers.view", "customers.create", locations=(1,)))
    response = clerk.post("/api/v1/customers", json=customer(primary_phone="801-555-0006", ssn="123-45-6789"))
    assert response.status_code == 409
    assert response.json["matches"] == [
        {"id": original["id"], "name": "Dana Reyes", "kind": "customer", "reasons": ["phone"]}
    ]


def test_ssn_duplicates_are_found_through_the_blind_index_only(api, session):
    create(api, customer(ssn="123-45-6789"))
    stored = session.scalars(select(Customer)).one()
    assert "6789" not in (stored.ssn_enc or "") and stored.ssn_index and "6789" not in stored.ssn_index
    candidate = duplicates.Candidate(ssn_index=stored.ssn_index)
    assert [m.reasons for m in duplicates.find(session, candidate)] == [["ssn"]]
    assert duplicates.find(session, duplicates.Candidate()) == []
