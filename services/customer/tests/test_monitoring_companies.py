"""The monitoring-company catalog (Monitored By) and the ADT PreCheck's rules at customer create."""

from helpers import create, customer, outbox_events

from vigil_shared.testing import identity_with

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
