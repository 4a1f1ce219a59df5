"""The monitoring-company catalog (Monitored By) and the ADT PreCheck's rules at customer create."""

from helpers import create, customer, outbox_events

from vigil_customer.tasks import event_consumer
from vigil_shared.testing import identity_with, incoming_event

COMPANIES = "/api/v1/monitoring-companies"
ADT_READY = {
    "birthdate": "1975-04-12",
    "ssn": "123-45-6789",
    "email": "dana@example.com",
    "address_line1": "1 Main St",
    "zip": "84601",
    "county": "Utah",
}


def company(api, **fields):
    response = api.post(COMPANIES, json={"name": "ADT Security"} | fields)
    assert response.status_code == 201, response.json
    return response.json


def test_the_catalog_is_kept_by_catalog_managers_and_read_by_anyone(api):
    adt = company(api, is_adt=True, precheck_order_enabled=True)
    assert adt["is_adt"] and adt["precheck_order_enabled"] and adt["active"]
    assert api.post(COMPANIES, json={"name": "adt security"}).status_code == 409
    clerk = api.as_(identity_with("customers.view"))
    assert clerk.get(COMPANIES).json["total"] == 1
    assert clerk.post(COMPANIES, json={"name": "Other"}).status_code == 403
    changed = api.patch(f"{COMPANIES}/{adt['id']}", json={"active": False})
    assert changed.status_code == 200 and changed.json["active"] is False
    assert api.get(COMPANIES, query_string={"active": "true"}).json["total"] == 0


def test_a_customer_names_an_active_company_of_the_catalog(api):
    brinks = company(api, name="Brinks")
    record = create(api, customer(monitoring_company_id=brinks["id"]))
    assert record["monitoring_company_id"] == brinks["id"]
    unknown = api.post("/api/v1/customers", json=customer(monitoring_company_id=999))
    assert unknown.status_code == 422 and "monitoring_company_id" in unknown.json["errors"]
    api.patch(f"{COMPANIES}/{brinks['id']}", json={"active": False})
    inactive = api.post("/api/v1/customers", json=customer(monitoring_company_id=brinks["id"]))
    assert inactive.status_code == 422
    assert api.post("/api/v1/customers", json=customer(monitored_by="ADT")).status_code == 422  # no free text


def test_the_customer_events_carry_monitored_by_for_the_property_service(api, session):
    """The property service matches a central station's messages by the customer's Monitored By; the
    value travels marked as the sale section's, so readers of the feed without it do not get it."""
    brinks, vector = company(api, name="Brinks"), company(api, name="Vector")
    record = create(api, customer(monitoring_company_id=brinks["id"]))
    api.patch(f"/api/v1/customers/{record['id']}", json={"city": "Hull"})
    api.patch(f"/api/v1/customers/{record['id']}", json={"monitoring_company_id": vector["id"]})
    created, city, moved = [e.data for e in outbox_events(session) if e.data.get("customer_id") == record["id"]]
    sale = {"monitoring_company_id": "customers.sale_info.view"}
    assert created["monitoring_company_id"] == brinks["id"] and created["restricted"] == sale
    assert city["monitoring_company_id"] is None  # not stated: unchanged
    assert moved["monitoring_company_id"] == vector["id"] and moved["restricted"] == sale


def test_an_adt_customer_needs_the_adt_fields_unless_precheck_is_off(api, session):
    adt = company(api, is_adt=True, precheck_order_enabled=True)
    missing = api.post("/api/v1/customers?allow_duplicates=true", json=customer(monitoring_company_id=adt["id"]))
    assert missing.status_code == 422
    assert set(missing.json["errors"]) == {"birthdate", "ssn", "email", "address_line1", "zip", "county"}
    commercial = api.post(
        "/api/v1/customers?allow_duplicates=true",
        json=customer(monitoring_company_id=adt["id"], account_type="commercial") | ADT_READY,
    )
    assert set(commercial.json["errors"]) == {"business_name", "business_contact"}
    skipped = api.post(
        "/api/v1/customers?allow_duplicates=true&run_precheck=false", json=customer(monitoring_company_id=adt["id"])
    )
    assert skipped.status_code == 201
    ready = create(api, customer(monitoring_company_id=adt["id"]) | ADT_READY)
    created = {e.data["customer_id"]: e.data["precheck"] for e in outbox_events(session, "customer.created")}
    assert created[ready["id"]] is True and created[skipped.json["id"]] is False


def test_the_precheck_starts_only_when_the_company_orders_it(api, session):
    adt = company(api, is_adt=True, precheck_order_enabled=False)
    record = create(api, customer(monitoring_company_id=adt["id"]) | ADT_READY | {"email": "x@example.com"})
    [event] = [e for e in outbox_events(session, "customer.created") if e.data["customer_id"] == record["id"]]
    assert event.data["precheck"] is False
    brinks = company(api, name="Brinks")
    refused = api.post(
        "/api/v1/customers?run_precheck=true", json=customer(monitoring_company_id=brinks["id"]) | ADT_READY
    )
    assert refused.status_code == 422 and "run_precheck" in refused.json["errors"]


def email(tag: str) -> dict:
    return {"email": f"dana.{tag}@example.com"}  # one customer per email address


def test_the_dealer_number_is_required_when_the_adt_company_requires_one(api):
    adt = company(api, is_adt=True, requires_dealer_number=True)
    assert adt["requires_dealer_number"] is True
    missing = api.post(
        "/api/v1/customers?allow_duplicates=true", json=customer(monitoring_company_id=adt["id"]) | ADT_READY
    )
    assert missing.status_code == 422 and set(missing.json["errors"]) == {"dealer_number"}
    made = create(api, customer(monitoring_company_id=adt["id"], dealer_number="D-4471") | ADT_READY | email("a"))
    assert made["dealer_number"] == "D-4471"
    without_precheck = api.post(
        "/api/v1/customers?allow_duplicates=true&run_precheck=false", json=customer(monitoring_company_id=adt["id"])
    )
    assert without_precheck.status_code == 201  # the dealer number is an ADT PreCheck field only
    plain = company(api, name="ADT Canada", is_adt=True)  # a company that does not use dealer numbers
    assert plain["requires_dealer_number"] is False
    assert create(api, customer(monitoring_company_id=plain["id"]) | ADT_READY | email("b"))["dealer_number"] is None
    turned_off = api.patch(f"{COMPANIES}/{adt['id']}", json={"requires_dealer_number": False})
    assert turned_off.status_code == 200 and turned_off.json["requires_dealer_number"] is False
    assert create(api, customer(monitoring_company_id=adt["id"]) | ADT_READY | email("c"))["dealer_number"] is None


def station_link(consumer, property_id, customer_id, station):
    data = {
        "property_id": property_id,
        "customer_id": customer_id,
        "changed": ["central_station"],
        "account_number": f"ACC-{property_id}",
        "central_station": station,
    }
    return consumer.consume(incoming_event("property.updated", data, source="property"))


def test_monitored_by_is_locked_while_a_property_is_linked_to_a_central_station(api, runtime):
    consumer = event_consumer(runtime)
    brinks, vector = company(api, name="Brinks"), company(api, name="Vector")
    record = create(api, customer(monitoring_company_id=brinks["id"]))
    path = f"/api/v1/customers/{record['id']}"
    assert station_link(consumer, 501, record["id"], "Rapid Response")
    assert station_link(consumer, 502, record["id"], None)  # another property, never linked
    refused = api.patch(path, json={"monitoring_company_id": vector["id"]})
    assert refused.status_code == 409, refused.json
    assert refused.json["type"] == "urn:vigil:problem:central-station-linked"
    assert "Rapid Response" in refused.json["detail"]
    assert [(p["property_id"], p["central_station"]) for p in refused.json["properties"]] == [(501, "Rapid Response")]
    assert api.patch(path, json={"monitoring_company_id": None}).status_code == 409  # clearing it is a change too
    assert api.get(path).json["monitoring_company_id"] == brinks["id"]
    # the rest of the record stays editable, and Monitored By sent back unchanged is no change
    assert api.patch(path, json={"city": "Provo", "monitoring_company_id": brinks["id"]}).status_code == 200
    assert station_link(consumer, 501, record["id"], None)  # unlinked at the property
    moved = api.patch(path, json={"monitoring_company_id": vector["id"]})
    assert moved.status_code == 200 and moved.json["monitoring_company_id"] == vector["id"]
