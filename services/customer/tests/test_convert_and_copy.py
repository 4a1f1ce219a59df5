"""Converting a lead, duplicating a customer, and the history of both."""

from helpers import create, customer, lead, outbox_events

from vigil_shared.testing import identity_with


def test_a_lead_converts_keeping_its_id_data_and_history(api, session):
    prospect = create(api, lead(email="lee@example.com", lead_comments="wants cameras", source="flyer"))
    api.post(f"/api/v1/customers/{prospect['id']}/notes", json={"text": "called"})
    url = f"/api/v1/customers/{prospect['id']}/convert"
    missing = api.post(url, json={"location_id": 2})
    assert missing.status_code == 422 and "sold_by" in missing.json["errors"]
    no_type = api.post(url, json={"location_id": 2, "sold_by": "rep1"})
    assert no_type.status_code == 422 and "account_type" in no_type.json["errors"]
    converted = api.post(url, json={"location_id": 2, "sold_by": "rep1", "account_type": "commercial"})
    assert converted.status_code == 200, converted.json
    body = converted.json
    assert body["id"] == prospect["id"] and body["kind"] == "customer" and body["location_id"] == 2
    assert body["sold_by"] == "rep1" and body["email"] == "lee@example.com" and body["converted_at"]
    assert "sale_date" in body and "abort_code" in body and "lead_status" not in body
    assert api.get(f"/api/v1/customers/{prospect['id']}/notes").json["total"] == 1
    history = api.get(f"/api/v1/customers/{prospect['id']}/history?action=convert").json["items"]
    assert {(e["field"], e["old_value"], e["new_value"]) for e in history} == {
        ("kind", "lead", "customer"),
        ("location_id", "1", "2"),
        ("sold_by", None, "rep1"),
        ("account_type", None, "commercial"),
    }
    assert api.get(f"/api/v1/customers/{prospect['id']}/history?action=create").json["total"] > 1
    event = outbox_events(session, "customer.converted")[0]
    assert event.data == {"customer_id": prospect["id"], "location_id": 2}
    again = api.post(url, json={"location_id": 2, "sold_by": "rep1"})
    assert again.status_code == 409
    assert api.get("/api/v1/customers?kind=customer&q=lee").json["total"] == 1


def test_converting_needs_lead_modify_and_customer_create_in_the_target(api):
    prospect = create(api, lead(account_type="residential"))
    url = f"/api/v1/customers/{prospect['id']}/convert"
    rep = api.as_(identity_with("leads.view", "leads.modify", "customers.create", locations=(1,)))
    refused = rep.post(url, json={"location_id": 2, "sold_by": "rep"})
    assert refused.status_code == 403 and "location_id" in refused.json["errors"]
    no_lead_rights = api.as_(identity_with("leads.view", "customers.create", locations=(1,)))
    assert no_lead_rights.post(url, json={"location_id": 1, "sold_by": "rep"}).status_code == 403
    assert rep.post(url, json={"location_id": 1, "sold_by": "rep"}).status_code == 200


def test_required_customer_custom_fields_are_asked_for_on_conversion(api):
    api.post(
        "/api/v1/custom-fields",
        json={"key": "contract_no", "label": "Contract", "type": "text", "required": True, "applies_to": "customer"},
    )
    prospect = create(api, lead(account_type="residential"))
    url = f"/api/v1/customers/{prospect['id']}/convert"
    assert api.post(url, json={"location_id": 1, "sold_by": "r"}).json["errors"] == {
        "custom_fields.contract_no": ["Required."]
    }
    done = api.post(url, json={"location_id": 1, "sold_by": "r", "custom_fields": {"contract_no": "C1"}})
    assert done.json["custom_fields"] == {"contract_no": "C1"}


def test_duplicate_customer_is_a_copy_not_a_merge(api, session):
    original = create(
        api,
        customer(
            email="orig@example.com",
            ssn="123-45-6789",
            business_name="Shop",
            account_number="AC-9",
            abort_code="4242",
            sold_by="rep",
            mmr=4999,
            address_line1="1 Main St",
            zip="84601",
        ),
    )
    copied = api.post(f"/api/v1/customers/{original['id']}/duplicate", json={"address_line1": "2 Side St"})
    assert copied.status_code == 201, copied.json
    copy = copied.json
    assert copy["id"] != original["id"] and copy["business_name"] == "Shop" and copy["ssn"] == "123-45-6789"
    assert copy["address_line1"] == "2 Side St" and copy["sold_by"] == "rep" and copy["mmr"] == 4999
    assert copy["email"] is None and copy["account_number"] is None and copy["abort_code"] is None
    assert api.get(f"/api/v1/customers/{original['id']}").json["address_line1"] == "1 Main St"
    assert (
        api.get(f"/api/v1/customers/{copy['id']}/history?action=create").json["items"][-1]["new_value"]
        == f"copy of #{original['id']}"
    )
    assert api.get(f"/api/v1/customers/{original['id']}/history?action=duplicate").json["total"] == 1
    assert len(outbox_events(session, "customer.created")) == 2


def test_a_copy_leaves_out_what_the_caller_may_not_enter(api):
    original = create(api, customer(sold_by="rep", install_tech="tech"))
    clerk = api.as_(identity_with("customers.view", "customers.create", "customers.sale_info.view"))
    copy = clerk.post(f"/api/v1/customers/{original['id']}/duplicate", json={})
    assert copy.status_code == 201, copy.json
    full = api.get(f"/api/v1/customers/{copy.json['id']}").json
    assert full["sold_by"] is None and full["install_tech"] is None and full["first_name"] == "Dana"
    elsewhere = clerk.post(f"/api/v1/customers/{original['id']}/duplicate", json={"location_id": 2})
    assert elsewhere.status_code == 403


def test_history_filters(api):
    record = create(api)
    api.patch(f"/api/v1/customers/{record['id']}", json={"spouse": "Sam"})
    other = api.as_(
        identity_with("customers.view", "customers.modify", "customers.contact_info.modify", username="bob")
    )
    other.patch(f"/api/v1/customers/{record['id']}", json={"spouse": "Max"})
    url = f"/api/v1/customers/{record['id']}/history"
    spouse = api.get(f"{url}?field=spouse").json["items"]
    assert [(e["actor_name"], e["old_value"], e["new_value"], e["source"]) for e in spouse] == [
        ("bob", "Sam", "Max", "api"),
        ("admin", None, "Sam", "api"),
    ]
    assert api.get(f"{url}?user=bob").json["total"] == 1
    assert api.get(f"{url}?source=import").json["total"] == 0
    assert api.get(f"{url}?since=2099-01-01T00:00:00Z").json["total"] == 0
    assert api.get(f"{url}?until=2099-01-01T00:00:00Z").json["total"] > 2
    assert api.get(f"{url}?source=telepathy").status_code == 422
    assert api.as_(identity_with("customers.view")).get(url).status_code == 403


def test_history_keeps_the_client_address_request_and_source(api):
    from vigil_shared.identity import Identity
    from vigil_shared.testing import ADMIN

    record = create(api)
    integration = Identity(
        subject="key:7",
        username="alarm-sync",
        kind="api_key",
        permissions=ADMIN.permissions,
        locations=ADMIN.locations,
        request_id="req-42",
        client_ip="203.0.113.9",
    )
    api.as_(integration).patch(f"/api/v1/customers/{record['id']}", json={"spouse": "Sam"})
    entry = api.get(f"/api/v1/customers/{record['id']}/history?field=spouse").json["items"][0]
    assert (entry["client_ip"], entry["request_id"], entry["source"], entry["actor_id"], entry["actor_name"]) == (
        "203.0.113.9",
        "req-42",
        "integration",
        "key:7",
        "alarm-sync",
    )
