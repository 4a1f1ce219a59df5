"""`/leads`: the lead records under the `leads.*` rights alone."""

from helpers import create, customer, lead

from vigil_shared.testing import assert_hidden, identity_with, unknown_path

REP = ("leads.view", "leads.create", "leads.modify", "leads.delete", "customers.contact_info.modify")


def rep(api, *extra, locations=(1,)):
    return api.as_(identity_with(*REP, *extra, locations=locations, username="rep"))


def test_a_lead_only_user_works_with_leads(api):
    sales = rep(api)
    created = sales.post("/api/v1/leads", json=lead(first_name="Lena"))
    assert created.status_code == 201, created.json
    record = created.json
    assert record["kind"] == "lead" and created.headers["Location"].endswith(f"/api/v1/leads/{record['id']}")
    assert sales.get(f"/api/v1/leads/{record['id']}").json["first_name"] == "Lena"
    patched = sales.patch(f"/api/v1/leads/{record['id']}", json={"lead_status": "hot", "first_name": "Lina"})
    assert patched.status_code == 200 and patched.json["lead_status"] == "hot"
    listed = sales.get("/api/v1/leads").json
    assert [item["id"] for item in listed["items"]] == [record["id"]]
    assert sales.get("/api/v1/customers").status_code == 403, "no customers.* right at all"
    assert sales.delete(f"/api/v1/leads/{record['id']}").status_code == 204
    assert sales.get(f"/api/v1/leads/{record['id']}").status_code == 404


def test_customers_are_not_leads_here(api):
    a_customer = create(api)
    create(api, lead())
    assert api.get(f"/api/v1/leads/{a_customer['id']}").status_code == 404
    assert api.patch(f"/api/v1/leads/{a_customer['id']}", json={"spouse": "x"}).status_code == 404
    assert api.get("/api/v1/leads").json["total"] == 1
    assert api.get("/api/v1/leads?kind=customer").status_code == 422
    assert api.post("/api/v1/leads", json=customer(kind="customer")).status_code == 422
    assert api.post("/api/v1/leads", json=lead(kind=None) | {"kind": "lead"}).status_code == 201


def test_lead_rights_are_checked_at_the_leads_location(api):
    there = create(api, lead(location_id=2))
    sales = rep(api)
    path = f"/api/v1/leads/{there['id']}"
    unknown = unknown_path(path, there["id"])
    assert_hidden(sales.get(path), sales.get(unknown))
    assert_hidden(sales.patch(path, json={"bogus": 1}), sales.patch(unknown, json={"bogus": 1}))
    assert_hidden(sales.post(f"{path}/convert", json={}), sales.post(f"{unknown}/convert", json={}))
    assert sales.get("/api/v1/leads").json["total"] == 0
    assert sales.post("/api/v1/leads", json=lead(location_id=2)).status_code == 403


def test_converting_from_the_leads_route(api):
    record = create(api, lead(account_type="residential"))
    converted = rep(api, "customers.create").post(
        f"/api/v1/leads/{record['id']}/convert", json={"location_id": 1, "sold_by": "rep"}
    )
    assert converted.status_code == 200 and converted.json["kind"] == "customer"
    assert converted.headers["Location"].endswith(f"/api/v1/customers/{record['id']}")
    assert api.get(f"/api/v1/leads/{record['id']}").status_code == 404
