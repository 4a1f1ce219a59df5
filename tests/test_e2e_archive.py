"""Archiving and unarchiving end to end, through the gateway only: the operations resource, the
preview gathered from every service, the saga that cascades to sub-customers and cancels their
future items (surviving a kill -9 of each service's worker), archived = read-only everywhere, and
unarchive with its scopes, the blocked sub-customer and the restore option."""

from __future__ import annotations

import os
import signal
import time
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
import requests
from conftest import assert_hidden, assert_problem, customer_body, restart, unique_phone, unknown_path

ARCHIVED = "urn:vigil:problem:customer-archived"
PARENT_ARCHIVED = "urn:vigil:problem:parent-archived"


def new_customer(gateway, location_id: int, **fields) -> dict:
    response = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(location_id, primary_phone=unique_phone("613"), **fields),
    )
    assert response.status_code == 201, response.text
    return response.json()


def new_property(gateway, customer_id: int) -> dict:
    response = gateway.post(
        f"/api/v1/customers/{customer_id}/properties",
        json={"account_number": f"ARC-{uuid.uuid4().hex[:8]}", "address": "12 Elm Street"},
    )
    assert response.status_code == 201, response.text
    return response.json()


def book(gateway, property_id: int, days: float, kind: str = "service", technician: int | None = None) -> dict:
    begins = datetime.now(UTC) + timedelta(days=days)
    body = {"type": kind, "starts_at": begins.isoformat(), "ends_at": (begins + timedelta(hours=1)).isoformat()}
    if technician is not None:
        body["technician_id"] = technician
    response = gateway.post(f"/api/v1/properties/{property_id}/appointments", json=body)
    assert response.status_code == 201, response.text
    return response.json()


LINES = [{"description": "Monitoring", "unit_price": 2999}]


def card(gateway, processor_url: str, customer_id: int) -> int:
    """A billing method from a card tokenized at the sandbox processor (as a browser would)."""
    body = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "holder": "Dana Reyes"}
    token = requests.post(f"{processor_url}/v1/tokens", json=body, timeout=10)
    assert token.status_code == 201, token.text
    method = gateway.post(f"/api/v1/customers/{customer_id}/billing-methods", json={"token": token.json()["token"]})
    assert method.status_code == 201, method.text
    return method.json()["id"]


def recurring_invoice(gateway, customer_id: int, start: date | None = None) -> dict:
    start = start or datetime.now(UTC).date() + timedelta(days=3)
    made = gateway.post(
        f"/api/v1/customers/{customer_id}/recurring-invoices", json={"lines": LINES, "start_date": start.isoformat()}
    )
    assert made.status_code == 201, made.text
    return made.json()


def scheduled_payment(gateway, customer_id: int, method_id: int, days: int = 30) -> dict:
    due = datetime.now(UTC).date() + timedelta(days=days)
    made = gateway.post(
        f"/api/v1/customers/{customer_id}/scheduled-payments",
        json={"billing_method_id": method_id, "amount": 2999, "due_date": due.isoformat()},
    )
    assert made.status_code == 201, made.text
    return made.json()


def family(gateway, location_id: int, subs: int = 2, processor_url: str | None = None) -> dict:
    """A parent with ``subs`` sub-customers, each with a property, a future service and sale visit; with
    ``processor_url`` also a recurring invoice and a future scheduled payment each. (A sub-customer's
    payments are taken on its parent, so a sub's scheduled payment was set up before it was linked.)"""
    parent = new_customer(gateway, location_id, last_name="Parent")
    children = [new_customer(gateway, location_id, last_name=f"Sub{i}") for i in range(subs)]
    billing: dict[int, list[tuple[str, int]]] = {}
    for customer in [parent, *children]:
        if processor_url is not None:
            method = card(gateway, processor_url, customer["id"])
            billing[customer["id"]] = [("scheduled_payment", scheduled_payment(gateway, customer["id"], method)["id"])]
        if customer is not parent:
            linked = gateway.patch(f"/api/v1/customers/{customer['id']}", json={"parent_customer_id": parent["id"]})
            assert linked.status_code == 200, linked.text
        if processor_url is not None:
            billing[customer["id"]].insert(0, ("recurring_invoice", recurring_invoice(gateway, customer["id"])["id"]))
    visits: dict[int, list[int]] = {}
    properties: dict[int, int] = {}
    for customer in [parent, *children]:
        prop = new_property(gateway, customer["id"])
        properties[customer["id"]] = prop["id"]
        visits[customer["id"]] = [book(gateway, prop["id"], 10)["id"], book(gateway, prop["id"], 20, "sale")["id"]]
    return {"parent": parent, "subs": children, "visits": visits, "properties": properties, "billing": billing}


def billing_status(gateway, customer_id: int) -> dict[tuple[str, int], tuple[str, str | None]]:
    """``{(type, id): (status, cancelled_by_operation)}`` of its recurring invoices and scheduled payments."""
    found = {}
    for kind, path in (("recurring_invoice", "recurring-invoices"), ("scheduled_payment", "scheduled-payments")):
        response = gateway.get(f"/api/v1/customers/{customer_id}/{path}", params={"per_page": 100})
        assert response.status_code == 200, response.text
        for item in response.json()["items"]:
            found[(kind, item["id"])] = (item["status"], item["cancelled_by_operation"])
    return found


@pytest.fixture(scope="module")
def processor_url(stack) -> str:
    return stack.env["VIGIL_PROCESSOR_URL"]


def wait_operation(gateway, location: str, timeout: float = 60) -> dict:
    def finished():
        response = gateway.get(location)
        assert response.status_code == 200, response.text
        body = response.json()
        return body if body["status"] in ("succeeded", "failed") else None

    return gateway.wait_for(finished, timeout=timeout, what=f"operation {location}")


def archive(gateway, customer_id: int) -> dict:
    response = gateway.post(f"/api/v1/customers/{customer_id}/archive", json={"confirm": True})
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == response.json()["links"]["self"]
    return wait_operation(gateway, response.headers["Location"])


def unarchive(gateway, customer_id: int, **options) -> dict:
    response = gateway.post(f"/api/v1/customers/{customer_id}/unarchive", json={"confirm": True, **options})
    assert response.status_code == 202, response.text
    return wait_operation(gateway, response.headers["Location"])


def status_of(gateway, appointment_id: int) -> dict:
    response = gateway.get(f"/api/v1/appointments/{appointment_id}")
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture(scope="module")
def home(locations) -> int:
    return locations["home"]


# --- preview ----------------------------------------------------------------------------------------


def items_of(preview_customer: dict, participant: str) -> set[tuple[str, int]]:
    return {(i["type"], i["id"]) for i in preview_customer["items"] if i["participant"] == participant}


def test_the_preview_lists_every_service_s_items_for_the_customer_and_each_sub(gateway, home, processor_url):
    fam = family(gateway, home, processor_url=processor_url)
    parent = fam["parent"]
    past = book(gateway, fam["properties"][parent["id"]], -3)  # in the past: not affected
    stopped = recurring_invoice(gateway, parent["id"])
    assert gateway.post(f"/api/v1/recurring-invoices/{stopped['id']}/cancel").status_code == 200  # not active
    preview = gateway.get(f"/api/v1/customers/{parent['id']}/archive-preview")
    assert preview.status_code == 200, preview.text
    body = preview.json()
    assert body["nothing_affected"] is False and set(body["participants"]) == {"property", "billing"}
    assert items_of(body["customer"], "property") == {("appointment", v) for v in fam["visits"][parent["id"]]}
    assert past["id"] not in {i["id"] for i in body["customer"]["items"] if i["type"] == "appointment"}
    assert {i["kind"] for i in body["customer"]["items"] if i["type"] == "appointment"} == {"service", "sale"}
    assert items_of(body["customer"], "billing") == set(fam["billing"][parent["id"]])
    [payment] = [i for i in body["customer"]["items"] if i["type"] == "scheduled_payment"]
    assert payment["amount"] == 2999 and payment["due_date"] > datetime.now(UTC).date().isoformat()
    assert [s["id"] for s in body["sub_customers"]] == [s["id"] for s in fam["subs"]]
    for sub in body["sub_customers"]:
        assert items_of(sub, "property") == {("appointment", v) for v in fam["visits"][sub["id"]]}
        assert items_of(sub, "billing") == set(fam["billing"][sub["id"]])
    assert body["counts"] == {"appointment": 6, "recurring_invoice": 3, "scheduled_payment": 3}

    lonely = new_customer(gateway, home)
    quiet = gateway.get(f"/api/v1/customers/{lonely['id']}/archive-preview").json()
    assert quiet["nothing_affected"] is True and quiet["customer"]["items"] == [] and quiet["sub_customers"] == []


def test_leads_cannot_be_archived_and_the_confirmation_is_required(gateway, home):
    lead = new_customer(gateway, home, kind="lead", lead_status="new", account_type=None)
    assert_problem(gateway.post(f"/api/v1/customers/{lead['id']}/archive", json={"confirm": True}), 409)
    assert_problem(gateway.get(f"/api/v1/customers/{lead['id']}/archive-preview"), 409)
    customer = new_customer(gateway, home)
    assert (
        "confirm"
        in assert_problem(gateway.post(f"/api/v1/customers/{customer['id']}/archive", json={"confirm": False}), 422)[
            "errors"
        ]
    )
    assert_problem(gateway.post(f"/api/v1/customers/{customer['id']}/archive", json={}), 422)
    assert gateway.get(f"/api/v1/customers/{customer['id']}").json()["archived_at"] is None


# --- archive ----------------------------------------------------------------------------------------


def test_archiving_cascades_to_subs_and_cancels_their_future_items_stamped_with_the_operation(
    gateway, home, processor_url
):
    fam = family(gateway, home, processor_url=processor_url)
    parent = fam["parent"]
    past = book(gateway, fam["properties"][parent["id"]], -2)
    operation = archive(gateway, parent["id"])
    assert operation["status"] == "succeeded" and operation["kind"] == "customer.archive"
    assert operation["progress"] == {"done": 9, "total": 9}  # 3 customers x (customer, property, billing)
    billed = {
        (item["type"], item["id"])
        for step in operation["steps"]
        if step["participant"] == "billing"
        for item in step["result"]["cancelled"]
    }
    assert billed == {item for items in fam["billing"].values() for item in items}
    for customer in [parent, *fam["subs"]]:
        assert billing_status(gateway, customer["id"]) == {
            item: ("cancelled", operation["id"]) for item in fam["billing"][customer["id"]]
        }
    assert operation["links"]["customer"] == f"/api/v1/customers/{parent['id']}"
    cancelled = {
        item["id"]
        for step in operation["steps"]
        if step["participant"] == "property"
        for item in step["result"]["cancelled"]
    }
    assert cancelled == {v for visits in fam["visits"].values() for v in visits}
    for customer in [parent, *fam["subs"]]:
        record = gateway.get(f"/api/v1/customers/{customer['id']}").json()
        assert record["archived_at"] is not None
        for visit in fam["visits"][customer["id"]]:
            appointment = status_of(gateway, visit)
            assert appointment["status"] == "cancelled"
            assert appointment["cancelled_by_operation"] == operation["id"]
    assert status_of(gateway, past["id"])["status"] == "scheduled"  # the past is left as it was
    # archiving again is refused; so is the preview
    assert_problem(gateway.post(f"/api/v1/customers/{parent['id']}/archive", json={"confirm": True}), 409)


def test_operations_are_the_caller_s_own(gateway, gateway_as, home):
    customer = new_customer(gateway, home)
    response = gateway.post(f"/api/v1/customers/{customer['id']}/archive", json={"confirm": True})
    operation_id = response.json()["id"]
    listed = gateway.get("/api/v1/operations", params={"per_page": 100})
    assert listed.status_code == 200, listed.text
    mine = listed.json()
    assert operation_id in {o["id"] for o in mine["items"]} and mine["total"] >= 1
    stranger = gateway_as(["customers.view", "customers.archive"], [home])
    assert_problem(stranger.get(f"/api/v1/operations/{operation_id}"), 404)
    assert operation_id not in {o["id"] for o in stranger.get("/api/v1/operations").json()["items"]}
    assert_problem(gateway.get("/api/v1/operations/customer-" + "0" * 32), 404)
    assert_problem(gateway.get("/api/v1/operations/nonsense"), 404)
    assert_problem(gateway.get("/api/v1/operations", params={"status": "bogus"}), 422)


def test_the_merged_openapi_describes_the_operations_resource_once(gateway):
    """The gateway answers `GET /operations` (every owner's list merged); a service's own entry for
    that path does not replace its description, and one operation is read from its owner."""
    document = gateway.get("/api/v1/openapi.json").json()
    listed = document["paths"]["/api/v1/operations"]["get"]
    text = listed.get("summary", "") + listed.get("description", "")
    assert "x-vigil-service" not in listed and "from every service" in text
    one = document["paths"]["/api/v1/operations/{operation_id}"]["get"]
    assert one["x-vigil-service"] == "customer"
    billing_items = document["paths"]["/api/v1/archive-items/billing"]["get"]
    assert billing_items["x-vigil-service"] == "billing"


def test_archiving_needs_the_archive_permission_at_the_customer_s_location(gateway, gateway_as, locations):
    customer = new_customer(gateway, locations["home"])
    elsewhere = gateway_as(["customers.view", "customers.archive"], [locations["other"]])
    archive, preview = (f"/api/v1/customers/{customer['id']}/{action}" for action in ("archive", "archive-preview"))
    assert_hidden(
        elsewhere.post(archive, json={"confirm": True}),
        elsewhere.post(unknown_path(archive, customer["id"]), json={"confirm": True}),
    )
    assert_hidden(elsewhere.get(preview), elsewhere.get(unknown_path(preview, customer["id"])))
    clerk = gateway_as(["customers.view", "customers.modify"], [locations["home"]])
    assert_problem(clerk.post(f"/api/v1/customers/{customer['id']}/archive", json={"confirm": True}), 403)


# --- read-only --------------------------------------------------------------------------------------


def test_an_archived_customer_is_read_only_in_every_service_and_readable(gateway, home, processor_url):
    fam = family(gateway, home, subs=1, processor_url=processor_url)
    parent, sub = fam["parent"], fam["subs"][0]
    archive(gateway, parent["id"])
    for customer in (parent, sub):
        cid, prop = customer["id"], fam["properties"][customer["id"]]
        visit = fam["visits"][cid][0]
        (_, template), (_, scheduled) = fam["billing"][cid]
        writes = [
            gateway.patch(f"/api/v1/customers/{cid}", json={"city": "Hull"}),
            gateway.delete(f"/api/v1/customers/{cid}"),
            gateway.post(f"/api/v1/customers/{cid}/notes", json={"body": "hello"}),
            gateway.post(f"/api/v1/customers/{cid}/contacts", json={"first_name": "Al", "last_name": "Bo"}),
            gateway.post(f"/api/v1/customers/{cid}/tags", json={"name": "vip"}),
            gateway.post(f"/api/v1/customers/{cid}/properties", json={"address": "1 Oak"}),
            gateway.patch(f"/api/v1/properties/{prop}", json={"address": "2 Oak"}),
            gateway.post(f"/api/v1/properties/{prop}/deactivate", json={}),
            gateway.post(
                f"/api/v1/properties/{prop}/appointments",
                json={
                    "type": "service",
                    "starts_at": "2030-01-01T10:00:00Z",
                    "ends_at": "2030-01-01T11:00:00Z",
                },
            ),
            gateway.patch(f"/api/v1/appointments/{visit}", json={"notes": "x"}),
            gateway.post(f"/api/v1/customers/{cid}/invoices", json={"lines": LINES}),
            gateway.post(
                f"/api/v1/customers/{cid}/recurring-invoices", json={"lines": LINES, "start_date": "2030-01-01"}
            ),
            gateway.post(f"/api/v1/recurring-invoices/{template}/cancel"),
            gateway.post(f"/api/v1/scheduled-payments/{scheduled}/cancel"),
            gateway.post(f"/api/v1/customers/{cid}/payments", json={"method": "cash", "amount": 100}),
            gateway.post(f"/api/v1/customers/{cid}/billing-methods", json={"token": "tok_whatever"}),
        ]
        for response in writes:
            problem = assert_problem(response, 409)
            assert problem["type"] == ARCHIVED, response.text
            assert f"/api/v1/customers/{cid}/unarchive" in problem["detail"]
        assert gateway.get(f"/api/v1/customers/{cid}").status_code == 200
        assert gateway.get(f"/api/v1/customers/{cid}/properties").status_code == 200
        assert gateway.get(f"/api/v1/properties/{prop}").status_code == 200
        assert gateway.get(f"/api/v1/customers/{cid}/notes").status_code == 200
        for path in ("billing", "recurring-invoices", "scheduled-payments", "invoices", "transactions"):
            assert gateway.get(f"/api/v1/customers/{cid}/{path}").status_code == 200, path


# --- unarchive --------------------------------------------------------------------------------------


def test_unarchive_parent_only_then_the_blocked_sub_then_parent_and_children(gateway, home):
    fam = family(gateway, home)
    parent, (first, second) = fam["parent"], fam["subs"]
    archive(gateway, parent["id"])
    blocked = assert_problem(gateway.post(f"/api/v1/customers/{first['id']}/unarchive", json={"confirm": True}), 409)
    assert blocked["type"] == PARENT_ARCHIVED and blocked["parent_customer_id"] == parent["id"]

    operation = unarchive(gateway, parent["id"], scope="parent")
    assert operation["status"] == "succeeded" and operation["progress"] == {"done": 3, "total": 3}
    assert gateway.get(f"/api/v1/customers/{parent['id']}").json()["archived_at"] is None
    assert gateway.patch(f"/api/v1/customers/{parent['id']}", json={"city": "Hull"}).status_code == 200
    assert gateway.get(f"/api/v1/customers/{first['id']}").json()["archived_at"] is not None
    assert (
        assert_problem(gateway.patch(f"/api/v1/customers/{first['id']}", json={"city": "Hull"}), 409)["type"]
        == ARCHIVED
    )
    # cancelled items stay cancelled by default
    assert all(status_of(gateway, v)["status"] == "cancelled" for v in fam["visits"][parent["id"]])
    # the parent is active again: its sub may be unarchived alone
    unarchive(gateway, first["id"])
    assert gateway.post(f"/api/v1/properties/{fam['properties'][first['id']]}/deactivate", json={}).status_code in (
        200,
        204,
    )
    assert gateway.get(f"/api/v1/customers/{second['id']}").json()["archived_at"] is not None

    # archive again (the parent cascades to the unarchived sub only), then everything back at once
    again = archive(gateway, parent["id"])
    assert again["progress"]["total"] == 6  # parent and first; second was archived already
    everything = unarchive(gateway, parent["id"], scope="parent_and_children")
    assert everything["progress"] == {"done": 9, "total": 9}
    for customer in (parent, first, second):
        assert gateway.get(f"/api/v1/customers/{customer['id']}").json()["archived_at"] is None
    assert_problem(gateway.post(f"/api/v1/customers/{parent['id']}/unarchive", json={"confirm": True}), 409)


def test_restore_cancelled_restores_exactly_the_stamped_items_that_still_make_sense(gateway, home, processor_url):
    customer = new_customer(gateway, home)
    method = card(gateway, processor_url, customer["id"])
    monthly = recurring_invoice(gateway, customer["id"], datetime.now(UTC).date() - timedelta(days=40))
    payment = scheduled_payment(gateway, customer["id"], method)
    stopped = scheduled_payment(gateway, customer["id"], method, days=60)
    assert gateway.post(f"/api/v1/scheduled-payments/{stopped['id']}/cancel").status_code == 200
    prop = new_property(gateway, customer["id"])["id"]
    technician = int(uuid.uuid4().int % 1_000_000) + 2_000_000
    future = book(gateway, prop, 5, technician=technician)
    booked_over = book(gateway, prop, 6, technician=technician)
    called_off = book(gateway, prop, 7)
    assert gateway.post(f"/api/v1/appointments/{called_off['id']}/cancel", json={"reason": "Away"}).status_code == 200
    archive(gateway, customer["id"])
    # meanwhile the technician was booked elsewhere over one of the cancelled visits
    other = new_property(gateway, new_customer(gateway, home)["id"])["id"]
    clash = gateway.post(
        f"/api/v1/properties/{other}/appointments",
        json={
            "type": "service",
            "technician_id": technician,
            "starts_at": booked_over["starts_at"],
            "ends_at": booked_over["ends_at"],
        },
    )
    assert clash.status_code == 201, clash.text
    operation = unarchive(gateway, customer["id"], restore_cancelled=True)
    [step] = [s for s in operation["steps"] if s["participant"] == "property"]
    assert [i["id"] for i in step["result"]["restored"]] == [future["id"]]
    assert [i["id"] for i in step["result"]["not_restored"]] == [booked_over["id"]]
    assert status_of(gateway, future["id"])["status"] == "scheduled"
    assert status_of(gateway, booked_over["id"])["status"] == "cancelled"
    restored = status_of(gateway, called_off["id"])  # cancelled before archiving: not archiving's to restore
    assert restored["status"] == "cancelled" and restored["cancel_reason"] == "Away"
    [billed] = [s for s in operation["steps"] if s["participant"] == "billing"]
    assert [(i["type"], i["id"]) for i in billed["result"]["restored"]] == [
        ("recurring_invoice", monthly["id"]),
        ("scheduled_payment", payment["id"]),
    ]
    assert billing_status(gateway, customer["id"]) == {
        ("recurring_invoice", monthly["id"]): ("active", None),
        ("scheduled_payment", payment["id"]): ("scheduled", None),
        ("scheduled_payment", stopped["id"]): ("cancelled", None),
    }
    [template] = gateway.get(f"/api/v1/customers/{customer['id']}/recurring-invoices").json()["items"]
    assert template["next_date"] >= datetime.now(UTC).date().isoformat()  # resumes ahead: no back-billing


# --- the archived filter ------------------------------------------------------------------------------


def test_the_archived_filter_on_list_and_search(gateway, home):
    name = f"Arch{uuid.uuid4().hex[:8]}"
    kept = new_customer(gateway, home, last_name=name)
    gone = new_customer(gateway, home, last_name=name)
    archive(gateway, gone["id"])

    def ids(**params):
        response = gateway.get("/api/v1/customers", params={"q": name, **params})
        assert response.status_code == 200, response.text
        return {c["id"] for c in response.json()["items"]}

    assert ids() == {kept["id"], gone["id"]}
    assert ids(archived="all") == {kept["id"], gone["id"]}
    assert ids(archived="only") == {gone["id"]}
    assert ids(archived="none") == {kept["id"]}
    listed = gateway.get("/api/v1/customers", params={"archived": "only", "per_page": 100}).json()["items"]
    assert gone["id"] in {c["id"] for c in listed} and kept["id"] not in {c["id"] for c in listed}


# --- crashes ------------------------------------------------------------------------------------------


def _kill_and_restart(stack, name: str, pause: float) -> None:
    [process] = [p for p in stack.processes if p.name == name]
    time.sleep(pause)
    os.killpg(process.popen.pid, signal.SIGKILL)
    process.popen.wait(20)
    restart(stack, process)


def _state(gateway, fam: dict) -> dict:
    customers = [fam["parent"], *fam["subs"]]
    return {
        "archived": [gateway.get(f"/api/v1/customers/{c['id']}").json()["archived_at"] is not None for c in customers],
        "visits": [status_of(gateway, v)["status"] for c in customers for v in fam["visits"][c["id"]]],
        "billing": [
            sorted((kind, status) for (kind, _), (status, _) in billing_status(gateway, c["id"]).items())
            for c in customers
        ],
    }


@pytest.mark.parametrize("worker", ["property-worker", "customer-worker", "billing-worker"])
def test_kill_9_of_a_worker_mid_saga_ends_in_the_same_state_as_an_undisturbed_run(
    stack, gateway, home, worker, processor_url
):
    undisturbed = family(gateway, home, subs=3, processor_url=processor_url)
    reference = archive(gateway, undisturbed["parent"]["id"])
    disturbed = family(gateway, home, subs=3, processor_url=processor_url)
    response = gateway.post(f"/api/v1/customers/{disturbed['parent']['id']}/archive", json={"confirm": True})
    assert response.status_code == 202, response.text
    _kill_and_restart(stack, worker, pause=0.05)
    operation = wait_operation(gateway, response.headers["Location"], timeout=120)
    assert operation["status"] == reference["status"] == "succeeded"
    assert operation["progress"] == reference["progress"] == {"done": 12, "total": 12}
    assert _state(gateway, disturbed) == _state(gateway, undisturbed)
    assert all(status == "cancelled" for status in _state(gateway, disturbed)["visits"])
    assert all(status == "cancelled" for statuses in _state(gateway, disturbed)["billing"] for _, status in statuses)
    assert [len(statuses) for statuses in _state(gateway, disturbed)["billing"]] == [2, 2, 2, 2]


# --- parent and sub-customers -------------------------------------------------------------------------


def test_parent_picker_and_header(gateway, home):
    tag = f"Fam{uuid.uuid4().hex[:8]}"
    parent = new_customer(gateway, home, last_name=tag, first_name="Parent")
    loner = new_customer(gateway, home, last_name=tag, first_name="Loner")
    sub = new_customer(gateway, home, last_name=tag, first_name="Child", parent_customer_id=parent["id"])

    def candidates(customer_id: int, q: str = tag):
        return gateway.get(f"/api/v1/customers/{customer_id}/parent-candidates", params={"q": q})

    found = candidates(loner["id"])
    assert found.status_code == 200, found.text
    assert {c["id"] for c in found.json()["items"]} == {parent["id"]}  # not itself, not the sub
    assert {c["id"] for c in candidates(sub["id"]).json()["items"]} == {parent["id"], loner["id"]} - {sub["id"]} | {
        loner["id"]
    }
    by_id = candidates(loner["id"], str(parent["id"])).json()["items"]
    assert parent["id"] in {c["id"] for c in by_id}
    assert_problem(candidates(parent["id"]), 409)  # it has children: it cannot become one

    family_of_sub = gateway.get(f"/api/v1/customers/{sub['id']}/sub-customers").json()
    assert family_of_sub["parent"]["id"] == parent["id"] and family_of_sub["total"] == 0
    summary = gateway.get(f"/api/v1/customers/{sub['id']}/summary").json()
    assert summary["family"]["header"] == f"Sub-customer of {family_of_sub['parent']['name']}"
    new_customer(gateway, home, last_name=tag, first_name="Second", parent_customer_id=parent["id"])
    header = gateway.get(f"/api/v1/customers/{parent['id']}/summary").json()["family"]
    assert header["header"] == "2 sub-customers" and len(header["sub_customers"]) == 2
    assert gateway.get(f"/api/v1/customers/{loner['id']}/summary").json()["family"]["header"] is None
