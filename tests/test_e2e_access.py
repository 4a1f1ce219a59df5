"""Route × role × location: generated from the merged OpenAPI document, so no route is left out.

Every operation must declare its rule (`x-vigil-permission`, set by `vigil_shared.web.requires`),
or be public (`security: []`). Then, for every operation:
- a signed-in caller holding no permission is refused (403);
- for location-scoped operations on a record of the *home* location, a caller holding that very
  permission only at the *other* location is refused with exactly what an id that names nothing
  answers (404, the same problem), so ids cannot probe which records exist;
- lists answered to that caller never contain a home-location row (OWASP API1/API5).
A path parameter the fixtures cannot fill with a real home-location record fails the suite:
a new route must bring its fixture.
"""

from __future__ import annotations

import re

import pytest
import requests
from conftest import UNKNOWN_ID, Gateway, assert_hidden, assert_problem, customer_body

METHODS = ("get", "post", "put", "patch", "delete")
PARAM = re.compile(r"{(\w+)}")


def created_ids(**responses) -> dict[str, str]:
    """Each name's record id (as it stands in a URL), once every response is checked to be a 201."""
    for response in responses.values():
        assert response.status_code == 201, response.text
    return {name: str(response.json()["id"]) for name, response in responses.items()}


def operations(doc: dict):
    for path, item in doc["paths"].items():
        for method in METHODS:
            if method in item:
                yield path, method, item[method]


def is_public(operation: dict) -> bool:
    return operation.get("security") == []


@pytest.fixture(scope="session")
def openapi(gateway) -> dict:
    doc = gateway.get("/api/v1/openapi.json").json()
    assert "x-vigil-unavailable-services" not in doc, doc.get("x-vigil-unavailable-services")
    return doc


@pytest.fixture(scope="session")
def home_records(stack, gateway, locations) -> dict[str, str]:
    """Real records in the home location, by the path parameter that names them."""
    customer = gateway.post(
        "/api/v1/customers",
        json=customer_body(locations["home"], first_name="Homer", last_name="Access", primary_phone="217-555-0101"),
    )
    assert customer.status_code == 201, customer.text
    customer_id = customer.json()["id"]
    prop = gateway.post(f"/api/v1/customers/{customer_id}/properties", json={"address": "1 Home Rd"})
    assert prop.status_code == 201, prop.text
    return {
        "customer_id": str(customer_id),
        "property_id": str(prop.json()["id"]),
        "location_id": str(locations["home"]),
        **customer_children(gateway, customer_id),
        **property_children(gateway, prop.json()["id"]),
        **billing_children(gateway, customer_id, stack.env["VIGIL_PROCESSOR_URL"]),
        **credit_children(gateway, customer_id),
    }


def credit_children(gateway, customer_id: int) -> dict[str, str]:
    """A credit check on the home customer (a manual score: no bureau call needed)."""
    manual = gateway.post(f"/api/v1/customers/{customer_id}/credit-checks/manual", json={"score": 705})
    assert manual.status_code == 201, manual.text
    return {"check_id": str(manual.json()["id"])}


CUSTOMER_CHILDREN = ("note_id", "contact_id", "file_id", "tag_id")


def customer_children(gateway, customer_id: int) -> dict[str, str]:
    """A note, a contact, a file and a tag on the home customer (the customer service's sub-routes)."""
    base = f"/api/v1/customers/{customer_id}"
    note = gateway.post(f"{base}/notes", json={"text": "Home note"})
    contact = gateway.post(f"{base}/contacts", json={"type": "emergency", "name": "Home Contact"})
    upload = gateway.post(f"{base}/files", files={"file": ("home.txt", b"home file\n", "text/plain")})
    tag = gateway.post("/api/v1/tags", json={"name": f"e2e-access-{customer_id}"})
    created = created_ids(note_id=note, contact_id=contact, file_id=upload, tag_id=tag)
    applied = gateway.post(f"{base}/tags", json={"tag_id": tag.json()["id"]})
    assert applied.status_code == 201, applied.text
    return created


PROPERTY_CHILDREN = ("system_id", "equipment_id", "appointment_id")


def property_children(gateway, property_id: int) -> dict[str, str]:
    """A system, a piece of equipment and an appointment at the home property (the property service's sub-routes)."""
    base = f"/api/v1/properties/{property_id}"
    kind = gateway.post("/api/v1/system-kinds", json={"name": f"e2e-access-{property_id}"})
    assert kind.status_code == 201, kind.text
    system = gateway.post(f"{base}/systems", json={"kind_id": kind.json()["id"], "ip_address": "10.9.9.9"})
    item = gateway.post(f"{base}/equipment", json={"item": "Home keypad"})
    visit = gateway.post(
        f"{base}/appointments",
        json={"type": "service", "starts_at": "2030-01-02T09:00:00Z", "ends_at": "2030-01-02T10:00:00Z"},
    )
    return created_ids(system_id=system, equipment_id=item, appointment_id=visit)


BILLING_CHILDREN = (
    "invoice_id",
    "billing_method_id",
    "payment_id",
    "recurring_invoice_id",
    "scheduled_payment_id",
)


def billing_children(gateway, customer_id: int, processor_url: str) -> dict[str, str]:
    """An invoice, a card (tokenized at the sandbox processor) and a cash payment of the home customer."""
    invoice = gateway.post(
        f"/api/v1/customers/{customer_id}/invoices", json={"lines": [{"description": "Home", "unit_price": 100}]}
    )
    assert invoice.status_code == 201, invoice.text
    token = requests.post(
        f"{processor_url}/v1/tokens", json={"number": "4242424242424242", "exp_month": 12, "exp_year": 2099}, timeout=10
    )
    assert token.status_code == 201, token.text
    method = gateway.post(f"/api/v1/customers/{customer_id}/billing-methods", json={"token": token.json()["token"]})
    assert method.status_code == 201, method.text
    payment = gateway.post(f"/api/v1/customers/{customer_id}/payments", json={"method": "cash", "amount": 100})
    assert payment.status_code == 201, payment.text
    recurring = gateway.post(
        f"/api/v1/customers/{customer_id}/recurring-invoices",
        json={"lines": [{"description": "Home", "unit_price": 100}], "start_date": "2099-01-01"},
    )
    scheduled = gateway.post(
        f"/api/v1/customers/{customer_id}/scheduled-payments",
        json={"billing_method_id": method.json()["id"], "amount": 100, "due_date": "2099-01-01"},
    )
    return created_ids(
        recurring_invoice_id=recurring,
        scheduled_payment_id=scheduled,
        invoice_id=invoice,
        billing_method_id=method,
        payment_id=payment,
    )


def fill(path: str, records: dict[str, str], scope: str) -> str:
    def value(match):
        name = match.group(1)
        if name in records:
            return records[name]
        if scope != "location":
            return "1"  # company-wide rules do not depend on which record
        raise AssertionError(
            f"no home-location fixture for path parameter {{{name}}} in {path}: "
            "add one to home_records in tests/test_e2e_access.py"
        )

    return PARAM.sub(value, path)


def test_every_operation_declares_its_permission(openapi):
    missing = [
        f"{method.upper()} {path}"
        for path, method, op in operations(openapi)
        if not is_public(op) and "x-vigil-permission" not in op
    ]
    assert missing == [], f"operations without a permission rule: {missing}"


def test_a_caller_without_permissions_is_refused_everywhere(openapi, gateway_as, home_records):
    nobody = gateway_as([])
    wrong = []
    for path, method, op in operations(openapi):
        rule = op.get("x-vigil-permission")
        if is_public(op) or rule == "authenticated":
            continue
        response = nobody.request(method.upper(), fill(path, home_records, op.get("x-vigil-scope")), json={})
        if response.status_code != 403:
            wrong.append(f"{method.upper()} {path}: {response.status_code}")
        else:
            assert response.headers["Content-Type"].startswith("application/problem+json")
    assert wrong == [], f"answered a caller holding no permission: {wrong}"


# A create under a customer the service cannot confirm answers this 422 for an unknown id; the same one
# for a customer outside the caller's rights.
NO_SUCH_CUSTOMER = {"customer_id": ["No such customer."]}


def test_a_caller_from_another_location_gets_what_an_unknown_id_gets(openapi, gateway_as, locations, home_records):
    wrong = []
    unknown_records = {name: str(UNKNOWN_ID) for name in home_records}
    for path, method, op in operations(openapi):
        if op.get("x-vigil-scope") != "location" or not PARAM.search(path):
            continue
        outsider = gateway_as([op["x-vigil-permission"]], [locations["other"]])
        response = outsider.request(method.upper(), fill(path, home_records, "location"), json={})
        unknown = outsider.request(method.upper(), fill(path, unknown_records, "location"), json={})
        status = 422 if response.status_code == 422 and response.json().get("errors") == NO_SUCH_CUSTOMER else 404
        try:
            assert_hidden(response, unknown, status)
        except AssertionError as failed:
            wrong.append(f"{method.upper()} {path} as holder of {op['x-vigil-permission']} elsewhere: {failed}")
    assert wrong == [], f"home-location records told apart from unknown ids from another location: {wrong}"


def test_lists_never_show_another_locations_rows(openapi, gateway_as, locations, home_records):
    leaks = []
    # customers and properties are what lists show; note, contact, file and tag ids live in other tables
    home_ids = {
        int(v)
        for k, v in home_records.items()
        if k not in ("location_id", *CUSTOMER_CHILDREN, *PROPERTY_CHILDREN, *BILLING_CHILDREN)
    }
    for path, method, op in operations(openapi):
        if method != "get" or op.get("x-vigil-scope") != "location" or PARAM.search(path):
            continue
        outsider = gateway_as([op["x-vigil-permission"]], [locations["other"]])
        response = outsider.get(path, params={"per_page": 100})
        assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text}"
        for item in response.json().get("items", []):
            if item.get("location_id") == locations["home"] or item.get("id") in home_ids:
                leaks.append(f"GET {path}: {item.get('id')}")
    assert leaks == [], f"home-location rows listed to another location: {leaks}"


def test_patch_cannot_set_fields_the_caller_may_not_set(openapi, gateway, locations, home_records):
    """Mass assignment (OWASP API3): protected fields are refused and nothing changes."""
    protected = {
        "id": 999999,
        "created_at": "2001-01-01T00:00:00Z",
        "updated_at": "2001-01-01T00:00:00Z",
        "location_id": locations["other"],
        "permissions": ["users.manage"],
        "is_admin": True,
        "version": 99,
    }
    wrong = []
    for path, method, op in operations(openapi):
        if method != "patch" or op.get("x-vigil-scope") != "location":
            continue
        target = fill(path, home_records, "location")
        before = gateway.get(target)
        for field, value in protected.items():
            if field == "location_id":
                continue  # moving a record between locations is a rule of its own, tested per service
            response = gateway.patch(target, json={field: value})
            if response.status_code not in (403, 422):
                wrong.append(f"PATCH {path} with {field}: {response.status_code}")
        after = gateway.get(target)
        if before.status_code == 200 and before.json() != after.json():
            wrong.append(f"PATCH {path}: the record changed")
    assert wrong == [], wrong


def test_admin_only_routes_refuse_a_location_manager(gateway_as, locations):
    clerk = gateway_as(["customers.view", "customers.modify"], [locations["home"]])
    for method, path in (
        ("GET", "/api/v1/users"),
        ("POST", "/api/v1/roles"),
        ("GET", "/api/v1/audit"),
        ("POST", "/api/v1/api-keys"),
        ("GET", "/api/v1/ops/customer/outbox"),
    ):
        assert_problem(clerk.request(method, path, json={}), 403)


# --- nobody gains what they do not hold (the gateway's own rules, through the real stack) --------


def test_a_user_manager_cannot_take_over_an_administrator(gateway, gateway_as, anonymous, admin_password):
    hr = gateway_as(["users.manage"])
    admin = next(
        u
        for u in gateway.get("/api/v1/users", params={"q": "admin", "per_page": 100}).json()["items"]
        if u["username"] == "admin"
    )
    assert_problem(hr.post(f"/api/v1/users/{admin['id']}/password", json={"password": "taken-over-password"}), 403)
    for change in ({"active": False}, {"email": "hr@example.com"}, {"name": "Puppet"}):
        assert_problem(hr.patch(f"/api/v1/users/{admin['id']}", json=change), 403)
    assert (
        anonymous.post("/api/v1/auth/token", json={"username": "admin", "password": admin_password}).status_code == 200
    )


def test_a_role_manager_cannot_add_a_permission_they_lack(gateway_as):
    manager = gateway_as(["roles.manage"])
    role = manager.post("/api/v1/roles", json={"name": "e2e-escalation", "permissions": ["roles.manage"]})
    assert role.status_code == 201, role.text
    refused = assert_problem(
        manager.patch(role.headers["Location"], json={"permissions": ["roles.manage", "confidential.ssn.view"]}), 403
    )
    assert refused["errors"]["permissions"] == ["Not yours to give: confidential.ssn.view"]


def test_an_api_key_stops_with_its_creator(stack, gateway, gateway_as, locations):
    creator = gateway_as(["api_keys.manage", "customers.view", "notes.view"], [locations["home"]])
    creator_id = creator.get("/api/v1/me").json()["id"]
    key = creator.post(
        "/api/v1/api-keys",
        json={"name": "e2e-sync", "permissions": ["customers.view"], "location_ids": [locations["home"]]},
        headers={"Idempotency-Key": "e2e-k"},
    )
    replay = creator.post(
        "/api/v1/api-keys",
        json={"name": "e2e-sync", "permissions": ["customers.view"], "location_ids": [locations["home"]]},
        headers={"Idempotency-Key": "e2e-k"},
    )
    assert key.status_code == replay.status_code == 201 and replay.json()["id"] == key.json()["id"]
    integration = Gateway(stack.gateway_url)
    integration.http.headers["X-API-Key"] = key.json()["key"]
    assert integration.get("/api/v1/customers").status_code == 200
    assert gateway.patch(f"/api/v1/users/{creator_id}", json={"active": False}).status_code == 200
    assert_problem(integration.get("/api/v1/customers"), 401)
