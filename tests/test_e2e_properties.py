"""Properties end to end, through the gateway only: the record and its PIN, locations, history and
events, systems and equipment, appointments, transfer, and the technician portal with its audit."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import conftest
import pytest
import requests
from conftest import assert_hidden, assert_problem, process_stopped, unknown_path

CODES_VIEW = "confidential.installation_codes.view"


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def new_customer(gateway, location_id: int, last_name: str = "Owner") -> dict:
    return conftest.new_customer(gateway, location_id, "Pat", last_name)


def new_property(gateway, customer_id: int, **fields) -> dict:
    response = gateway.post(
        f"/api/v1/customers/{customer_id}/properties",
        json={"account_number": unique("ACC"), "address": "12 Elm Street"} | fields,
    )
    assert response.status_code == 201, response.text
    return response.json()


def outbox_events(gateway, event_type: str, written_by: requests.Response) -> list[dict]:
    """The property outbox's events of a type that one request wrote (the view shows no event's data)."""
    response = gateway.get("/api/v1/ops/property/outbox", params={"type": event_type, "per_page": 100})
    assert response.status_code == 200, response.text
    request_id = written_by.headers["X-Request-ID"]
    return [event for event in response.json()["items"] if event["request_id"] == request_id]


@pytest.fixture(scope="module")
def home_customer(gateway, locations) -> dict:
    return new_customer(gateway, locations["home"])


# --- the property record -------------------------------------------------------------------------


def test_property_record_with_pin_masked_for_clerks(gateway, gateway_as, locations, home_customer):
    created = gateway.post(
        f"/api/v1/customers/{home_customer['id']}/properties",
        json={
            "account_number": unique("ACC"),
            "pin": "4821",
            "type": "Residential",
            "system_type": "DSC 1832 + CCTV",
            "address": "12 Elm Street",
            "city": "Ottawa",
            "postal_code": "K1A 0B1",
            "notes": "Dog on premises.",
            "access": {"managed_by": "letting_agent", "name": "Maple Lettings", "phone": "613-555-0101"},
        },
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["location_id"] == locations["home"] and body["pin"] == "4821" and body["type"] == "residential"
    assert body["monitoring_status"] == "active" and body["active"] is True
    clerk = gateway_as(["properties.view"], [locations["home"]])
    seen = clerk.get(f"/api/v1/properties/{body['id']}")
    assert seen.status_code == 200 and seen.json()["pin"] == "***" and "4821" not in seen.text
    audited = gateway.get("/api/v1/audit", params={"action": "confidential.read", "target_id": body["id"]})
    assert audited.json()["total"] >= 1 and audited.json()["items"][0]["details"]["fields"] == ["pin"]
    assert "X-Vigil-Confidential-Reads" not in created.headers


def test_patch_with_if_match_history_and_events(gateway, home_customer):
    prop = new_property(gateway, home_customer["id"])
    path = f"/api/v1/properties/{prop['id']}"
    etag = gateway.get(path).headers["ETag"]
    new_number = unique("ACC")
    changed = gateway.patch(
        path, json={"monitoring_status": "suspended", "account_number": new_number}, headers={"If-Match": etag}
    )
    assert changed.status_code == 200, changed.text
    assert_problem(gateway.patch(path, json={"city": "Kanata"}, headers={"If-Match": etag}), 412)
    history = gateway.get(f"{path}/history").json()["items"]
    assert {(e["field"], e["new_value"]) for e in history} >= {
        ("monitoring_status", "suspended"),
        ("account_number", new_number),
    }
    gateway.wait_for(lambda: outbox_events(gateway, "property.monitoring_changed", changed), what="the event")
    [updated] = outbox_events(gateway, "property.updated", changed)
    assert "data" not in updated  # an operator's view of the pipeline, not of the property's values


def test_mass_assignment_and_inactive_properties(gateway, home_customer):
    prop = new_property(gateway, home_customer["id"])
    path = f"/api/v1/properties/{prop['id']}"
    for field, value in (
        ("id", 1),
        ("customer_id", 1),
        ("location_id", 1),
        ("created_at", "2001-01-01T00:00:00Z"),
        ("active", False),
    ):
        problem = assert_problem(gateway.patch(path, json={field: value}), 422)
        assert list(problem["errors"]) == [field]
    assert gateway.post(f"{path}/deactivate", json={"reason": "Moved out"}).json()["active"] is False
    assert gateway.get(path).json()["active"] is False
    assert assert_problem(gateway.patch(path, json={"city": "Kanata"}), 409)["state"] == "inactive"
    assert gateway.post(f"{path}/reactivate").status_code == 200
    assert gateway.patch(path, json={"city": "Kanata"}).status_code == 200


def test_locations_decide_who_sees_a_property(gateway, gateway_as, locations, home_customer):
    prop = new_property(gateway, home_customer["id"])
    outsider = gateway_as(["properties.view", "properties.modify"], [locations["other"]])
    prop_path, list_path = f"/api/v1/properties/{prop['id']}", f"/api/v1/customers/{home_customer['id']}/properties"
    assert_hidden(outsider.get(prop_path), outsider.get(unknown_path(prop_path, prop["id"])))
    assert_hidden(outsider.get(list_path), outsider.get(unknown_path(list_path, home_customer["id"])))
    assert prop["id"] not in [
        p["id"] for p in outsider.get("/api/v1/properties", params={"per_page": 100}).json()["items"]
    ]
    local = gateway_as(["properties.view"], [locations["home"]])
    found = local.get("/api/v1/properties", params={"account_number": prop["account_number"]}).json()
    assert [p["id"] for p in found["items"]] == [prop["id"]]


def test_a_customer_moving_location_takes_its_properties_along(gateway, gateway_as, locations):
    customer = new_customer(gateway, locations["home"], "Mover")
    prop = new_property(gateway, customer["id"])
    moved = gateway.patch(f"/api/v1/customers/{customer['id']}", json={"location_id": locations["other"]})
    assert moved.status_code == 200, moved.text
    gateway.wait_for(
        lambda: gateway.get(f"/api/v1/properties/{prop['id']}").json()["location_id"] == locations["other"],
        what="customer.updated to move the property",
    )
    left = gateway_as(["properties.view"], [locations["home"]])
    prop_path = f"/api/v1/properties/{prop['id']}"
    assert_hidden(left.get(prop_path), left.get(unknown_path(prop_path, prop["id"])))


def test_transfer_to_a_new_homeowner(gateway, locations, home_customer):
    buyer = new_customer(gateway, locations["home"], "Buyer")
    prop = new_property(gateway, home_customer["id"])
    path = f"/api/v1/properties/{prop['id']}"
    gateway.post(f"{path}/equipment", json={"item": "Keypad", "zone": "1"})
    moved = gateway.post(f"{path}/transfer", json={"to_customer_id": buyer["id"], "reason": "House sold"})
    assert moved.status_code == 200, moved.text
    assert moved.json()["customer_id"] == buyer["id"]
    assert [p["id"] for p in gateway.get(f"/api/v1/customers/{buyer['id']}/properties").json()["items"]] == [prop["id"]]
    assert gateway.get(f"{path}/equipment").json()["total"] == 1
    entry = gateway.get(f"{path}/history").json()["items"][0]
    assert (entry["action"], entry["reason"]) == ("transferred", "House sold")
    gateway.wait_for(lambda: outbox_events(gateway, "property.transferred", moved), what="property.transferred")


def test_a_property_created_after_the_owners_delete_answered_is_refused(gateway, locations):
    """The replica hears of the deletion seconds later; a create that starts after the 204 must not slip in."""
    for attempt in range(5):
        owner = new_customer(gateway, locations["home"], f"Leaving{attempt}")
        new_property(gateway, owner["id"])  # the replica knows the owner, with its location
        assert gateway.delete(f"/api/v1/customers/{owner['id']}").status_code == 204
        late = gateway.post(f"/api/v1/customers/{owner['id']}/properties", json={"address": "1 Too Late Road"})
        assert_problem(late, 422)
        assert late.json()["errors"] == {"customer_id": ["No such customer."]}


def test_ids_of_deleted_customers_and_properties_are_never_handed_out_again(gateway, locations):
    """A stale form, a late ``customer.deleted`` or a replica naming the old record never reaches a new one."""
    gone = new_customer(gateway, locations["home"], "Gone")
    gone_property = new_property(gateway, gone["id"])
    etag = gateway.get(f"/api/v1/customers/{gone['id']}").headers["ETag"]
    assert gateway.delete(f"/api/v1/customers/{gone['id']}").status_code == 204
    gateway.wait_for(
        lambda: gateway.get(f"/api/v1/properties/{gone_property['id']}").status_code == 404,
        what="customer.deleted to remove the property",
    )

    newcomer = new_customer(gateway, locations["home"], "Newcomer")
    assert newcomer["id"] > gone["id"]
    stale = gateway.patch(
        f"/api/v1/customers/{gone['id']}", json={"last_name": "Overwritten"}, headers={"If-Match": etag}
    )
    assert_problem(stale, 404)
    fresh_property = new_property(gateway, newcomer["id"])
    assert fresh_property["id"] > gone_property["id"]
    assert gateway.get(f"/api/v1/customers/{newcomer['id']}").json()["last_name"] == "Newcomer"


def test_account_numbers_are_one_account_whatever_the_case(gateway, locations, home_customer):
    other = new_customer(gateway, locations["home"], "Casey")
    number = unique("acc")
    prop = new_property(gateway, home_customer["id"], account_number=number)
    assert_problem(
        gateway.post(f"/api/v1/customers/{other['id']}/properties", json={"account_number": f"  {number.upper()} "}),
        409,
    )
    found = gateway.get("/api/v1/properties", params={"account_number": number.upper()}).json()
    assert [p["id"] for p in found["items"]] == [prop["id"]]


# --- systems, equipment, appointments ------------------------------------------------------------


def test_systems_with_encrypted_passwords_and_equipment(gateway, gateway_as, locations, home_customer):
    prop = new_property(gateway, home_customer["id"])
    kind = gateway.post(
        "/api/v1/system-kinds",
        json={
            "name": unique("DSC PowerSeries"),
            "fields": [{"name": "ip_address", "label": "IP address", "required": True}],
        },
    )
    assert kind.status_code == 201, kind.text
    path = f"/api/v1/properties/{prop['id']}/systems"
    assert set(assert_problem(gateway.post(path, json={"kind_id": kind.json()["id"]}), 422)["errors"]) == {"ip_address"}
    system = gateway.post(
        path,
        json={
            "kind_id": kind.json()["id"],
            "ip_address": "10.0.0.7",
            "username": "installer",
            "password": "5555-secret",
            "version": "4.2",
        },
    )
    assert system.status_code == 201, system.text
    editor = gateway_as(["properties.view", "properties.modify"], [locations["home"]])
    seen = editor.get(f"{path}/{system.json()['id']}")
    assert seen.json()["password"] == "***" and "5555" not in seen.text
    assert assert_problem(editor.patch(f"{path}/{system.json()['id']}", json={"password": "x"}), 403)["errors"] == {
        "password": ["You need the 'confidential.installation_codes.modify' permission to set this field."]
    }
    item = gateway.post(
        f"/api/v1/properties/{prop['id']}/equipment",
        json={"item": "PIR motion sensor", "zone": "3", "install_date": "2026-03-01", "warranty_end": "2028-03-01"},
    )
    assert item.status_code == 201 and item.json()["status"] == "installed"
    assert_problem(gateway_as(["catalogs.manage"]).post("/api/v1/system-kinds", json={"name": ""}), 422)
    assert_problem(editor.post("/api/v1/system-kinds", json={"name": unique("x")}), 403)


def test_appointments_refuse_double_booking_and_cancel_cleanly(gateway, home_customer):
    prop = new_property(gateway, home_customer["id"])
    technician = int(uuid.uuid4().int % 1_000_000) + 1000
    start = datetime(2027, 1, 4, 9, tzinfo=UTC)

    def book(hours_from: float, hours: float = 1):
        begins = start + timedelta(hours=hours_from)
        return gateway.post(
            f"/api/v1/properties/{prop['id']}/appointments",
            json={
                "type": "service",
                "technician_id": technician,
                "starts_at": begins.isoformat(),
                "ends_at": (begins + timedelta(hours=hours)).isoformat(),
            },
        )

    first = book(0)
    assert first.status_code == 201, first.text
    assert assert_problem(book(0.5), 409)["conflicting_appointment_id"] == first.json()["id"]
    assert book(1).status_code == 201
    day = gateway.get(
        "/api/v1/appointments",
        params={"technician": technician, "from": start.isoformat(), "to": (start + timedelta(days=1)).isoformat()},
    ).json()
    assert day["total"] == 2
    cancelled = gateway.post(f"/api/v1/appointments/{first.json()['id']}/cancel", json={"reason": "Customer away"})
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert book(0).status_code == 201


# --- the technician portal -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def tech_site(gateway, home_customer) -> dict:
    prop = new_property(
        gateway,
        home_customer["id"],
        pin="2468",
        system_type="DSC 1832",
        access={"managed_by": "tenant", "name": "Tina Tenant", "phone": "613-555-0142"},
    )
    kind = gateway.post("/api/v1/system-kinds", json={"name": unique("Panel")}).json()
    gateway.post(
        f"/api/v1/properties/{prop['id']}/systems",
        json={"kind_id": kind["id"], "ip_address": "10.0.0.9", "password": "9999-code"},
    )
    contact = gateway.post(
        f"/api/v1/customers/{home_customer['id']}/contacts",
        json={"type": "emergency", "name": "Nora Neighbour", "phones": [{"label": "mobile", "number": "613-555-0177"}]},
    )
    assert contact.status_code == 201, contact.text
    return prop


def lookup(caller, site, pin="2468"):
    return caller.post("/api/v1/tech/lookup", json={"account_number": site["account_number"], "pin": pin})


def test_technician_lookup_answers_the_site_and_emergency_contacts(gateway_as, locations, tech_site):
    tech = gateway_as(["tech_portal.use"], [locations["home"]])
    response = lookup(tech, tech_site)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["property"]["id"] == tech_site["id"] and body["property"]["access"]["name"] == "Tina Tenant"
    assert body["systems"][0]["ip_address"] == "10.0.0.9" and body["systems"][0]["password"] == "***"
    assert [c["name"] for c in body["emergency_contacts"]] == ["Nora Neighbour"]
    assert body["partial"] is False and body["unavailable"] == []
    for secret in ("2468", "9999-code", "ssn", "birthdate", "billing"):
        assert secret not in response.text


def test_a_technician_allowed_to_see_codes_gets_the_password_and_the_read_is_audited(
    gateway, gateway_as, locations, tech_site
):
    tech = gateway_as(["tech_portal.use", CODES_VIEW], [locations["home"]])
    response = lookup(tech, tech_site)
    assert response.status_code == 200, response.text
    [system] = response.json()["systems"]
    assert system["password"] == "9999-code" and "X-Vigil-Confidential-Reads" not in response.headers
    entries = gateway.get(
        "/api/v1/audit", params={"action": "confidential.read", "target_type": "system", "target_id": system["id"]}
    ).json()
    newest = entries["items"][0]  # the admin who created the system saw it too, earlier
    assert newest["details"] == {"fields": ["password"], "path": "/api/v1/tech/lookup"}


def test_technician_lookup_needs_the_permission_at_the_propertys_location(gateway_as, locations, tech_site):
    assert_problem(lookup(gateway_as(["properties.view"], [locations["home"]]), tech_site), 403)
    elsewhere = gateway_as(["tech_portal.use"], [locations["other"]])  # the account is unknown to them
    assert assert_problem(lookup(elsewhere, tech_site), 404)["type"] == "urn:vigil:problem:no-match"
    assert_problem(
        gateway_as(["tech_portal.use"], [locations["home"]]).post(
            "/api/v1/tech/lookup", json={"account_number": "x", "pin": "12"}
        ),
        422,
    )


def test_five_wrong_pins_lock_the_account_and_every_lookup_is_audited(gateway, gateway_as, locations, home_customer):
    site = new_property(gateway, home_customer["id"], pin="1357")
    tech = gateway_as(["tech_portal.use"], [locations["home"]])
    for _ in range(4):
        assert assert_problem(lookup(tech, site, pin="0000"), 404)["type"] == "urn:vigil:problem:no-match"
    locked = lookup(tech, site, pin="0000")
    assert_problem(locked, 429)
    assert int(locked.headers["Retry-After"]) > 800
    assert_problem(lookup(tech, site, pin="1357"), 429)
    entries = gateway.get("/api/v1/audit", params={"action": "tech.lookup", "per_page": 100}).json()["items"]
    mine = [e for e in entries if (e.get("details") or {}).get("account_number") == site["account_number"]]
    assert [e["outcome"] for e in mine] == ["denied", "denied", "failure", "failure", "failure", "failure"]
    assert all("1357" not in str(e) and "0000" not in str(e["details"]) for e in mine)


def test_technician_lookup_is_partial_while_the_customer_service_is_down(stack, gateway_as, locations, tech_site):
    tech = gateway_as(["tech_portal.use"], [locations["home"]])
    with process_stopped(stack, "customer"):
        response = lookup(tech, tech_site)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["partial"] is True and body["unavailable"] == ["customer"] and body["emergency_contacts"] is None
        assert body["property"]["id"] == tech_site["id"]
