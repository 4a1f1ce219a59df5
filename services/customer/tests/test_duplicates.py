"""Likely duplicates on create: one engine, four reasons, an explicit override."""
from sqlalchemy import select

from helpers import create, customer, outbox_events
from vigil_customer import duplicates
from vigil_customer.models import Customer
from vigil_shared.testing import identity_with


def test_each_reason_is_reported_with_the_match(api):
    original = create(api, customer(first_name="Ann", last_name="Lee", primary_phone="801-555-0001",
                                    email="ann@example.com", ssn="123-45-6789", address_line1="12 Oak St.",
                                    zip="84601"))
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
        assert response.json["matches"] == [{"id": original["id"], "name": "Ann Lee", "kind": "customer",
                                             "reasons": [reason]}], reason


def test_several_reasons_and_several_matches(api):
    first = create(api, customer(primary_phone="801-555-0002", ssn="123-45-6789"))
    second = create(api, customer(primary_phone="801-555-0003", ssn="123-45-6789"))
    response = api.post("/api/v1/customers", json=customer(primary_phone="801-555-0002", work_phone="801-555-0003",
                                                           ssn="123-45-6789"))
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


def test_matches_in_locations_you_cannot_view_keep_their_name_private(api):
    hidden = create(api, customer(location_id=2, primary_phone="801-555-0005"))
    creator = api.as_(identity_with("customers.view", "customers.create", locations=(1,)))
    response = creator.post("/api/v1/customers", json=customer(primary_phone="801-555-0005"))
    assert response.json["matches"] == [{"id": hidden["id"], "name": None, "kind": "customer", "reasons": ["phone"]}]


def test_ssn_duplicates_are_found_through_the_blind_index_only(api, session):
    create(api, customer(ssn="123-45-6789"))
    stored = session.scalars(select(Customer)).one()
    assert "6789" not in (stored.ssn_enc or "") and stored.ssn_index and "6789" not in stored.ssn_index
    candidate = duplicates.Candidate(ssn_index=stored.ssn_index)
    assert [m.reasons for m in duplicates.find(session, candidate)] == [["ssn"]]
    assert duplicates.find(session, duplicates.Candidate()) == []
