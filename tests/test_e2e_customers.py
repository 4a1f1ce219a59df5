"""Customers and leads end to end, through the gateway only: the record, its permissions, search fed
by property events, history, duplicates, notes, contacts, tags, files, conversion and the summary."""

from __future__ import annotations

import os
import uuid

import pytest
from conftest import assert_hidden, assert_problem, customer_body, process_stopped, unique_phone, unknown_path


def phone() -> str:
    return unique_phone("801")


def body(location_id: int, **fields) -> dict:
    """The shared new customer, in Provo, with a phone of its own."""
    provo = {"city": "Provo", "state": "UT", "primary_phone": phone(), "account_type": "residential"}
    return customer_body(location_id, **(provo | fields))


def create(gateway, location_id: int, **fields) -> dict:
    response = gateway.post("/api/v1/customers", params={"allow_duplicates": "true"}, json=body(location_id, **fields))
    assert response.status_code == 201, response.text
    return response.json()


@pytest.fixture(scope="module")
def home(locations) -> int:
    return locations["home"]


@pytest.fixture(scope="module")
def other(locations) -> int:
    return locations["other"]


# --- the record -----------------------------------------------------------------------------------


def test_the_record_round_trips_with_normalised_values(gateway, home):
    created = gateway.post(
        "/api/v1/customers",
        json=body(
            home,
            primary_phone="(801) 555-0142",
            zip="84601-1234",
            state="ut",
            email="E2E.Dana@Example.com",
            credit_score=705,
            contract_term_months=36,
            sale_date="2026-05-01",
        ),
    )
    assert created.status_code == 201, created.text
    record = created.json()
    assert created.headers["Location"].endswith(f"/api/v1/customers/{record['id']}")
    assert record["primary_phone"] == "(801) 555-0142" and record["state"] == "UT" and record["zip"] == "84601-1234"
    assert record["credit_grade"] == "A" and record["contract_months_remaining"] is not None
    read = gateway.get(f"/api/v1/customers/{record['id']}")
    assert read.status_code == 200 and read.headers["ETag"] == created.headers["ETag"]
    bad_zip = gateway.post("/api/v1/customers", json=body(home, zip="22"))
    assert assert_problem(bad_zip, 422)["errors"]["zip"]


def test_stale_writes_are_refused(gateway, home):
    created = gateway.post("/api/v1/customers", params={"allow_duplicates": "true"}, json=body(home))
    url, etag = f"/api/v1/customers/{created.json()['id']}", created.headers["ETag"]
    assert gateway.patch(url, json={"spouse": "Sam"}, headers={"If-Match": etag}).status_code == 200
    assert_problem(gateway.patch(url, json={"spouse": "Max"}, headers={"If-Match": etag}), 412)
    assert gateway.get(url).json()["spouse"] == "Sam"


def test_duplicates_are_reported_and_can_be_overridden(gateway, home):
    number = phone()
    first = create(gateway, home, primary_phone=number, first_name="Dupe")
    again = gateway.post("/api/v1/customers", json=body(home, primary_phone=number))
    problem = assert_problem(again, 409)
    assert problem["matches"] == [{"id": first["id"], "name": "Dupe Reyes", "kind": "customer", "reasons": ["phone"]}]
    forced = gateway.post(
        "/api/v1/customers", params={"allow_duplicates": "true"}, json=body(home, primary_phone=number)
    )
    assert forced.status_code == 201


def test_idempotency_key_replays_the_first_answer(gateway, home):
    headers = {"Idempotency-Key": f"e2e-{uuid.uuid4().hex}"}
    payload = body(home)
    first = gateway.post("/api/v1/customers", json=payload, headers=headers)
    again = gateway.post("/api/v1/customers", json=payload, headers=headers)
    assert first.status_code == again.status_code == 201
    assert again.json()["id"] == first.json()["id"] and again.headers.get("Idempotent-Replayed") == "true"


# --- permissions ----------------------------------------------------------------------------------


def test_locations_sections_and_confidential_fields(gateway, gateway_as, home, other):
    record = create(gateway, home, ssn="123-45-6781", sale_date="2026-01-02", first_name="Scoped")
    url = f"/api/v1/customers/{record['id']}"
    outsider = gateway_as(["customers.view"], [other])
    assert_hidden(outsider.get(url), outsider.get(unknown_path(url, record["id"])))
    listed = outsider.get("/api/v1/customers", params={"q": "scoped", "per_page": 100}).json()
    assert all(item["location_id"] != home for item in listed["items"])

    clerk = gateway_as(["customers.view", "customers.modify", "customers.contact_info.modify"], [home])
    seen = clerk.get(url).json()
    assert seen["ssn"] == "***-**-6781" and "sale_date" not in seen
    refused = clerk.patch(url, json={"credit_score": 800, "spouse": "Sam"})
    assert assert_problem(refused, 403)["errors"] == {"credit_score": ["Needs the 'credit.create' permission."]}
    moved = clerk.patch(url, json={"location_id": other})
    assert assert_problem(moved, 403)["errors"]["location_id"]
    assert gateway.get(url).json()["spouse"] is None and gateway.get(url).json()["location_id"] == home


def test_leads_follow_lead_permissions_and_convert(gateway, gateway_as, home, other):
    lead = create(gateway, home, kind="lead", lead_status="new", account_type=None, first_name="Leandra")
    url = f"/api/v1/customers/{lead['id']}"
    customers_only = gateway_as(["customers.view"], [home])
    assert assert_problem(customers_only.get(url), 403)["permission"] == "leads.view"
    rep = gateway_as(["customers.view", "leads.view", "leads.modify", "customers.create"], [home, other])
    converted = rep.post(
        f"{url}/convert", json={"location_id": other, "sold_by": "rep-1", "account_type": "commercial"}
    )
    assert converted.status_code == 200, converted.text
    assert converted.json()["kind"] == "customer" and converted.json()["id"] == lead["id"]
    history = gateway.get(f"{url}/history", params={"action": "convert"}).json()["items"]
    assert {e["field"] for e in history} == {"kind", "location_id", "sold_by", "account_type"}
    events = gateway.get("/api/v1/ops/customer/outbox", params={"type": "customer.converted", "per_page": 100}).json()
    assert any(e["request_id"] == converted.headers["X-Request-ID"] for e in events["items"])


# --- history --------------------------------------------------------------------------------------


def test_history_records_who_when_how_and_from_where(gateway, home):
    record = create(gateway, home)
    gateway.patch(f"/api/v1/customers/{record['id']}", json={"spouse": "Sam"})
    entries = gateway.get(f"/api/v1/customers/{record['id']}/history", params={"field": "spouse"}).json()["items"]
    assert len(entries) == 1
    entry = entries[0]
    assert entry["actor_name"] == "admin" and entry["source"] == "api" and entry["client_ip"] == "127.0.0.1"
    assert entry["old_value"] is None and entry["new_value"] == "Sam" and entry["at"].endswith("Z")


# --- search fed by property events ----------------------------------------------------------------


def test_search_by_name_phone_and_account_number(gateway, home):
    marker = uuid.uuid4().hex[:8]
    record = create(gateway, home, last_name=f"Zyx{marker}", primary_phone="(801) 555-0188")
    found = gateway.get("/api/v1/customers", params={"q": f"zyx{marker[:4]}"}).json()
    assert [c["id"] for c in found["items"]] == [record["id"]] and found["total_estimated"] is False
    by_phone = gateway.get("/api/v1/customers", params={"q": "801.555.0188"}).json()
    assert record["id"] in [c["id"] for c in by_phone["items"]]
    account = f"ACC-{marker}"
    prop = gateway.post(
        f"/api/v1/customers/{record['id']}/properties", json={"address": "1 Main St", "account_number": account}
    )
    assert prop.status_code == 201, prop.text

    def found_by_account():
        items = gateway.get("/api/v1/customers", params={"q": account.lower()}).json()["items"]
        return [c["id"] for c in items] == [record["id"]]

    gateway.wait_for(found_by_account, what="the account number to reach the customer replica")


def test_deep_pages_follow_keyset_links(gateway, home):
    marker = uuid.uuid4().hex[:6]
    made = {create(gateway, home, last_name=f"Page{marker}", first_name=f"N{i}")["id"] for i in range(5)}
    seen, url, params = [], "/api/v1/customers", {"q": f"page{marker}", "per_page": 2}
    while url:
        response = gateway.get(url, params=params)
        seen += [c["id"] for c in response.json()["items"]]
        link = response.links.get("next", {}).get("url")
        url, params = (link[link.index("/api/") :], None) if link else (None, None)
    assert sorted(seen) == sorted(made) and len(seen) == 5


# --- around the record ----------------------------------------------------------------------------


def test_notes_contacts_tags_files_and_custom_fields(gateway, home):
    record = create(gateway, home)
    base = f"/api/v1/customers/{record['id']}"
    assert gateway.post(f"{base}/notes", json={"text": "regular"}).status_code == 201
    urgent = gateway.post(f"{base}/notes", json={"text": "Dog!", "urgent": True}).json()
    assert gateway.get(f"{base}/notes").json()["items"][0]["id"] == urgent["id"]
    gateway.post(f"{base}/contacts", json={"type": "emergency", "name": "Second", "passcode": "blue"})
    gateway.post(f"{base}/contacts", json={"type": "emergency", "name": "First", "call_priority": 1})
    emergency = gateway.get(f"{base}/contacts", params={"type": "emergency"}).json()["items"]
    assert [(c["name"], c["call_priority"]) for c in emergency] == [("First", 1), ("Second", 2)]

    tag_name = f"vip-{uuid.uuid4().hex[:6]}"
    tag = gateway.post("/api/v1/tags", json={"name": tag_name}).json()
    assert gateway.post(f"{base}/tags", json={"tag_id": tag["id"]}).status_code == 201
    assert [c["id"] for c in gateway.get("/api/v1/customers", params={"tag": tag_name}).json()["items"]] == [
        record["id"]
    ]

    content = b"%PDF-1.4\n" + os.urandom(4096)
    uploaded = gateway.post(f"{base}/files", files={"file": ("plan.pdf", content, "application/pdf")})
    assert uploaded.status_code == 201, uploaded.text
    downloaded = gateway.get(f"{base}/files/{uploaded.json()['id']}/content")
    assert downloaded.status_code == 200 and downloaded.content == content
    disguised = gateway.post(f"{base}/files", files={"file": ("x.pdf", b"MZ not a pdf", "application/pdf")})
    assert_problem(disguised, 415)

    key = f"gate_{uuid.uuid4().hex[:6]}"
    defined = gateway.post("/api/v1/custom-fields", json={"key": key, "label": "Gate", "type": "number"})
    assert defined.status_code == 201
    assert assert_problem(gateway.patch(base, json={"custom_fields": {key: "x"}}), 422)["errors"]
    assert gateway.patch(base, json={"custom_fields": {key: 4}}).json()["custom_fields"][key] == 4
    actions = {e["action"] for e in gateway.get(f"{base}/history", params={"per_page": 100}).json()["items"]}
    assert {"note_add", "contact_add", "tag_add", "file_add", "update", "create"} <= actions


def test_duplicate_customer_copies_the_record(gateway, home):
    original = create(gateway, home, business_name="Copy Shop", email=f"{uuid.uuid4().hex[:8]}@example.com")
    copy = gateway.post(f"/api/v1/customers/{original['id']}/duplicate", json={"first_name": "Copy"})
    assert copy.status_code == 201, copy.text
    assert copy.json()["business_name"] == "Copy Shop" and copy.json()["email"] is None
    assert copy.json()["id"] != original["id"]


# --- the summary ----------------------------------------------------------------------------------


def test_summary_counts_each_tab_the_caller_may_view(gateway, gateway_as, home, other):
    record = create(gateway, home, sold_by="rep-9", sale_date="2026-03-04")
    base = f"/api/v1/customers/{record['id']}"
    gateway.post(f"{base}/notes", json={"text": "open note"})
    gateway.post(f"{base}/contacts", json={"type": "emergency", "name": "Ann"})
    gateway.post(f"{base}/properties", json={"address": "9 Summary St"})
    summary = gateway.get(f"{base}/summary")
    assert summary.status_code == 200, summary.text
    data = summary.json()
    assert data["customer"]["id"] == record["id"] and data["partial"] is False and data["hidden"] == []
    assert data["counts"]["notes"] == 1 and data["counts"]["contacts"] == 1 and data["counts"]["properties"] == 1
    assert data["counts"]["files"] == 0 and data["sale"] == {"sale_date": "2026-03-04", "sold_by": "rep-9"}
    assert {"category": "account", "status": "active"} in data["status_boxes"]

    clerk = gateway_as(["customers.view", "notes.view"], [home])
    limited = clerk.get(f"{base}/summary").json()
    assert limited["counts"]["notes"] == 1 and limited["counts"]["contacts"] is None
    assert {"contacts", "files", "properties"} <= set(limited["hidden"]) and limited["sale"] is None
    outsider = gateway_as(["customers.view"], [other])
    assert_hidden(outsider.get(f"{base}/summary"), outsider.get(unknown_path(f"{base}/summary", record["id"])))
    assert_problem(gateway.get("/api/v1/customers/987654321/summary"), 404)


def test_summary_is_partial_while_the_property_service_is_down(stack, gateway, home):
    record = create(gateway, home)
    with process_stopped(stack, "property"):
        response = gateway.get(f"/api/v1/customers/{record['id']}/summary")
        assert response.status_code == 200, response.text
        data = response.json()
        assert data["partial"] is True and data["unavailable"] == ["property"]
        assert data["counts"]["properties"] is None and data["counts"]["notes"] == 0
        assert data["customer"]["id"] == record["id"]


def test_a_lead_only_user_works_through_the_leads_routes(gateway_as, home):
    rep = gateway_as(["leads.view", "leads.create", "leads.modify", "customers.contact_info.modify"], [home])
    created = rep.post(
        "/api/v1/leads", json=body(home, kind="lead", lead_status="new", account_type=None, first_name="Onlylead")
    )
    assert created.status_code == 201, created.text
    lead_id = created.json()["id"]
    assert rep.patch(f"/api/v1/leads/{lead_id}", json={"lead_status": "hot"}).json()["lead_status"] == "hot"
    assert [c["id"] for c in rep.get("/api/v1/leads", params={"q": "onlylead"}).json()["items"]] == [lead_id]
    assert_problem(rep.get("/api/v1/customers"), 403)


# --- what real use broke --------------------------------------------------------------------------


def test_a_duplicate_in_an_office_you_cannot_view_reveals_no_id_and_no_field(gateway, gateway_as, home, other):
    number = phone()
    hidden = create(gateway, other, primary_phone=number, email=f"{uuid.uuid4().hex[:8]}@example.com")
    clerk = gateway_as(["customers.view", "customers.create"], [home])
    problem = assert_problem(clerk.post("/api/v1/customers", json=body(home, primary_phone=number)), 409)
    assert problem["matches"] == [] and problem["other_matches"] == 1 and not problem.get("errors")
    assert str(hidden["id"]) not in str(problem["matches"]) and hidden["email"] not in str(problem)


def test_moving_an_emergency_contact_down_the_call_list_leaves_no_gap(gateway, home):
    base = f"/api/v1/customers/{create(gateway, home)['id']}/contacts"
    made = {
        name: gateway.post(base, json={"type": "emergency", "name": name}).json()["id"] for name in ("Ann", "Bob", "Cy")
    }

    def call_list():
        items = gateway.get(base, params={"type": "emergency"}).json()["items"]
        return [(c["name"], c["call_priority"]) for c in items]

    assert gateway.patch(f"{base}/{made['Ann']}", json={"call_priority": 3}).status_code == 200
    assert call_list() == [("Bob", 1), ("Cy", 2), ("Ann", 3)]
    assert gateway.patch(f"{base}/{made['Cy']}", json={"call_priority": 9}).json()["call_priority"] == 3
    assert call_list() == [("Bob", 1), ("Ann", 2), ("Cy", 3)]
    assert gateway.patch(f"{base}/{made['Cy']}", json={"call_priority": 1}).status_code == 200
    assert call_list() == [("Cy", 1), ("Bob", 2), ("Ann", 3)]


def test_a_phone_searched_as_1_plus_ten_digits_is_found(gateway, home):
    digits = "".join(ch for ch in unique_phone("613") if ch.isdigit())
    record = create(
        gateway, home, primary_phone=f"({digits[:3]}) {digits[3:6]}-{digits[6:]}", state="ON", city="Ottawa"
    )
    for q in (f"1{digits}", f"+1{digits}", digits):
        items = gateway.get("/api/v1/customers", params={"q": q}).json()["items"]
        assert record["id"] in [c["id"] for c in items], q


def test_a_create_hears_of_every_field_error_at_once(gateway, home):
    problem = assert_problem(
        gateway.post(
            "/api/v1/customers",
            json={
                "location_id": home,
                "city": "Provo",
                "state": "UT",
                "zip": "22",
                "primary_phone": phone(),
                "account_type": "residential",
                "email": "nope",
            },
        ),
        422,
    )
    assert set(problem["errors"]) == {"first_name", "last_name", "zip", "email"}
    record = create(gateway, home, zip="846011234")
    assert record["zip"] == "84601-1234"


def test_the_merged_openapi_documents_what_customer_operations_read(gateway):
    doc = gateway.get("/api/v1/openapi.json").json()
    create_op = doc["paths"]["/api/v1/customers"]["post"]
    names = {(p["in"], p["name"]) for p in create_op.get("parameters", [])}
    assert {("query", "allow_duplicates"), ("header", "Idempotency-Key")} <= names
    for path, method in (
        ("/api/v1/customers/{customer_id}", "patch"),
        ("/api/v1/customers/{customer_id}", "delete"),
        ("/api/v1/customers/{customer_id}/contacts/{contact_id}", "patch"),
    ):
        assert ("header", "If-Match") in {(p["in"], p["name"]) for p in doc["paths"][path][method]["parameters"]}


def test_concurrent_patches_of_one_customer_never_answer_500(gateway, home):
    from concurrent.futures import ThreadPoolExecutor

    from conftest import Gateway

    url = f"/api/v1/customers/{create(gateway, home)['id']}"

    def patch(i):
        caller = Gateway(gateway.base_url)  # a client per thread: requests sessions are not thread-safe
        caller.http.headers.update(gateway.http.headers)
        return caller.patch(url, json={"spouse": f"S{i}"}).status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(patch, range(24)))
    assert all(status in (200, 409) for status in statuses), statuses
    assert statuses.count(200) >= 1
