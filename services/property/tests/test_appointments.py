import threading
from datetime import datetime

import pytest
from sqlalchemy import func, select

from vigil_property import appointments
from vigil_property.history import SYSTEM
from vigil_property.models import Appointment, Property
from vigil_shared.errors import Problem
from vigil_shared.testing import UNKNOWN_ID, assert_hidden, identity_with, unknown_path

NINE, TEN, ELEVEN = "2026-12-01T09:00:00Z", "2026-12-01T10:00:00Z", "2026-12-01T11:00:00Z"
TECH = 12


@pytest.fixture
def book(api):
    def make(site, starts=NINE, ends=TEN, technician=TECH, client=None, **extra):
        return (client or api).post(
            f"/api/v1/properties/{site['id']}/appointments",
            json={"type": "service", "starts_at": starts, "ends_at": ends, "technician_id": technician} | extra,
        )

    return make


def test_schedule_and_read_an_appointment(api, site, book):
    created = book(site, notes="Replace keypad battery", type="Install")
    assert created.status_code == 201, created.json
    body = created.json
    assert body | {"id": 0, "created_at": "", "updated_at": ""} == {
        "id": 0,
        "property_id": site["id"],
        "customer_id": 7,
        "location_id": 1,
        "type": "install",
        "starts_at": NINE,
        "ends_at": TEN,
        "technician_id": TECH,
        "status": "scheduled",
        "notes": "Replace keypad battery",
        "cancel_reason": None,
        "cancelled_at": None,
        "cancelled_by": None,
        "cancelled_by_operation": None,
        "completed_at": None,
        "created_at": "",
        "updated_at": "",
    }
    assert created.headers["Location"].endswith(f"/api/v1/appointments/{body['id']}")
    read = api.get(f"/api/v1/appointments/{body['id']}")
    assert read.json == body and read.headers["ETag"] == created.headers["ETag"]
    offset = book(site, starts="2026-12-02T09:00:00-05:00", ends="2026-12-02T10:00:00-05:00")
    assert offset.json["starts_at"] == "2026-12-02T14:00:00Z"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"starts_at": TEN, "ends_at": NINE}, "ends_at"),
        ({"starts_at": NINE, "ends_at": NINE}, "ends_at"),
        ({"type": "party"}, "type"),
        ({"starts_at": "tomorrow"}, "starts_at"),
        ({"technician_id": 0}, "technician_id"),
        ({"status": "completed"}, "status"),
        ({"property_id": 4}, "property_id"),
    ],
)
def test_invalid_appointments_name_the_field(api, site, body, field):
    full = {"type": "service", "starts_at": NINE, "ends_at": TEN} | body
    response = api.post(f"/api/v1/properties/{site['id']}/appointments", json=full)
    assert response.status_code == 422 and set(response.json["errors"]) == {field}, response.json


def test_a_technician_cannot_be_booked_twice_at_once(api, known, site, book):
    first = book(site).json
    known(8, location_id=2)
    elsewhere = api.post("/api/v1/customers/8/properties", json={}).json
    clash = book(elsewhere, starts="2026-12-01T09:30:00Z", ends=ELEVEN)
    assert clash.status_code == 409 and clash.json["conflicting_appointment_id"] == first["id"]
    assert set(clash.json["errors"]) == {"starts_at"}
    assert book(elsewhere, starts=TEN, ends=ELEVEN).status_code == 201  # back to back is fine
    assert book(elsewhere, technician=13).status_code == 201  # another technician
    assert book(elsewhere, technician=None).status_code == 201  # unassigned
    assert api.post(f"/api/v1/appointments/{first['id']}/cancel", json={"reason": "Customer away"}).status_code == 200
    assert book(elsewhere, starts="2026-12-01T08:30:00Z", ends="2026-12-01T09:30:00Z").status_code == 201


def test_a_clash_names_the_other_visit_only_to_a_caller_who_may_view_it(api, known, site, book):
    """A technician serves several offices: the 409 named the id of the visit it clashed with, although
    the caller could not view it (a record of an office they do not hold)."""
    known(8, location_id=2)
    theirs = book(api.post("/api/v1/customers/8/properties", json={}).json).json
    scheduler = api.as_(identity_with("appointments.view", "appointments.modify", "properties.view", locations=(1,)))
    clash = book(site, starts="2026-12-01T09:30:00Z", ends=ELEVEN, client=scheduler)
    assert clash.status_code == 409 and set(clash.json["errors"]) == {"starts_at"}
    assert "conflicting_appointment_id" not in clash.json
    mine = book(site, starts=TEN, ends=ELEVEN, client=scheduler).json
    moved = scheduler.patch(f"/api/v1/appointments/{mine['id']}", json={"starts_at": "2026-12-01T09:30:00Z"})
    assert moved.status_code == 409 and "conflicting_appointment_id" not in moved.json
    everywhere = api.as_(identity_with("appointments.view", "appointments.modify", locations=(1, 2)))
    named = book(site, starts="2026-12-01T09:30:00Z", ends=ELEVEN, client=everywhere)
    assert named.status_code == 409 and named.json["conflicting_appointment_id"] == theirs["id"]


def test_rescheduling_into_a_clash_is_refused_and_changes_nothing(api, site, book):
    first = book(site).json
    second = book(site, starts=TEN, ends=ELEVEN, technician=13).json
    path = f"/api/v1/appointments/{second['id']}"
    moved = api.patch(path, json={"technician_id": TECH, "starts_at": "2026-12-01T09:59:00Z"})
    assert moved.status_code == 409 and moved.json["conflicting_appointment_id"] == first["id"]
    assert api.get(path).json == second
    ok = api.patch(path, json={"technician_id": TECH}, headers={"If-Match": f'"{second["id"]}.1"'})
    assert ok.status_code == 200 and ok.json["technician_id"] == TECH
    assert api.patch(path, json={"notes": "x"}, headers={"If-Match": f'"{second["id"]}.1"'}).status_code == 412
    backwards = api.patch(path, json={"ends_at": NINE})
    assert backwards.status_code == 422 and set(backwards.json["errors"]) == {"ends_at"}


def test_cancel_with_a_reason(api, site, book):
    created = book(site).json
    path = f"/api/v1/appointments/{created['id']}"
    assert api.post(f"{path}/cancel", json={}).json["errors"] == {"reason": ["Missing data for required field."]}
    assert api.post(f"{path}/cancel", json={"reason": "  "}).status_code == 422
    cancelled = api.post(f"{path}/cancel", json={"reason": "Customer sold the house"})
    assert cancelled.status_code == 200
    assert cancelled.json["status"] == "cancelled" and cancelled.json["cancel_reason"] == "Customer sold the house"
    assert cancelled.json["cancelled_by"] == "admin" and cancelled.json["cancelled_at"].endswith("Z")
    again = api.post(f"{path}/cancel", json={"reason": "again"})
    assert again.status_code == 409 and again.json["state"] == "cancelled"
    assert api.patch(path, json={"notes": "x"}).status_code == 409
    assert api.post(f"{path}/complete").status_code == 409
    history = api.get(f"/api/v1/properties/{site['id']}/history").json["items"]
    assert (history[0]["action"], history[0]["reason"]) == ("appointment_cancelled", "Customer sold the house")


def test_complete_with_notes(api, site, book):
    created = book(site).json
    done = api.post(f"/api/v1/appointments/{created['id']}/complete", json={"notes": "Battery replaced"})
    assert done.status_code == 200 and done.json["status"] == "completed" and done.json["notes"] == "Battery replaced"
    assert done.json["completed_at"].endswith("Z")
    assert api.post(f"/api/v1/appointments/{created['id']}/cancel", json={"reason": "x"}).status_code == 409


def test_a_technicians_day_across_locations_shows_only_yours(api, known, site, book):
    known(8, location_id=2)
    elsewhere = api.post("/api/v1/customers/8/properties", json={}).json
    morning = book(site).json
    book(elsewhere, starts=TEN, ends=ELEVEN)
    book(site, starts="2026-12-02T09:00:00Z", ends="2026-12-02T10:00:00Z")
    book(site, technician=13)
    day = {"technician": TECH, "from": "2026-12-01T00:00:00Z", "to": "2026-12-02T00:00:00Z"}
    everything = api.get("/api/v1/appointments", query_string=day).json
    assert [a["starts_at"] for a in everything["items"]] == [NINE, TEN]
    local = api.as_(identity_with("appointments.view", locations=(1,)))
    assert [a["id"] for a in local.get("/api/v1/appointments", query_string=day).json["items"]] == [morning["id"]]
    assert api.get("/api/v1/appointments", query_string={"from": TEN, "to": NINE}).status_code == 422
    assert api.get("/api/v1/appointments?status=cancelled").json["total"] == 0
    assert api.get(f"/api/v1/appointments?property_id={elsewhere['id']}").json["total"] == 1
    assert (
        api.get("/api/v1/customers/7/appointments?sort=-starts_at").json["items"][0]["starts_at"]
        == "2026-12-02T09:00:00Z"
    )
    assert_hidden(
        local.get("/api/v1/customers/8/appointments"), local.get(f"/api/v1/customers/{UNKNOWN_ID}/appointments")
    )
    visits = f"/api/v1/properties/{elsewhere['id']}/appointments"
    assert_hidden(local.get(visits), local.get(unknown_path(visits, elsewhere["id"])))
    assert api.get(f"/api/v1/properties/{site['id']}/appointments").json["total"] == 3


def test_appointment_permissions_follow_the_property_location(api, known, book):
    known(8, location_id=2)
    elsewhere = api.post("/api/v1/customers/8/properties", json={}).json
    appointment = book(elsewhere).json
    clerk = api.as_(identity_with("appointments.view", "appointments.modify", locations=(1,)))
    path = f"/api/v1/appointments/{appointment['id']}"
    for method, target, body in (
        ("GET", path, None),
        ("PATCH", path, {"notes": "x"}),
        ("POST", f"{path}/cancel", {"reason": "x"}),
        ("POST", f"{path}/complete", None),
    ):
        unknown = unknown_path(target, appointment["id"])
        assert_hidden(clerk.request(method, target, json=body), clerk.request(method, unknown, json=body))
    assert_hidden(
        book(elsewhere, starts=TEN, ends=ELEVEN, client=clerk),
        book({"id": UNKNOWN_ID}, starts=TEN, ends=ELEVEN, client=clerk),
    )
    viewer = api.as_(identity_with("appointments.view", locations=(2,)))
    assert viewer.get(path).status_code == 200
    assert viewer.post(f"{path}/cancel", json={"reason": "x"}).json["permission"] == "appointments.modify"


def test_inactive_property_takes_no_new_appointments_but_cancels(api, site, book):
    created = book(site).json
    api.post(f"/api/v1/properties/{site['id']}/deactivate")
    assert book(site, starts=TEN, ends=ELEVEN).status_code == 409
    assert api.patch(f"/api/v1/appointments/{created['id']}", json={"notes": "x"}).status_code == 409
    assert api.post(f"/api/v1/appointments/{created['id']}/cancel", json={"reason": "Site closed"}).status_code == 200


def test_transfer_takes_appointments_systems_and_equipment_along(api, known, site, book):
    appointment = book(site).json
    kind = api.post("/api/v1/system-kinds", json={"name": "Panel"}).json
    api.post(f"/api/v1/properties/{site['id']}/systems", json={"kind_id": kind["id"]})
    api.post(f"/api/v1/properties/{site['id']}/equipment", json={"item": "Keypad"})
    known(8)
    assert api.post(f"/api/v1/properties/{site['id']}/transfer", json={"to_customer_id": 8}).status_code == 200
    assert api.get(f"/api/v1/appointments/{appointment['id']}").json["customer_id"] == 8
    assert api.get("/api/v1/customers/8/appointments").json["total"] == 1
    assert api.get("/api/v1/customers/7/appointments").json["total"] == 0
    assert api.get(f"/api/v1/properties/{site['id']}/systems").json["total"] == 1
    assert api.get(f"/api/v1/properties/{site['id']}/equipment").json["total"] == 1
    assert len(api.get(f"/api/v1/properties/{site['id']}/history").json["items"]) == 5


def test_two_concurrent_bookings_of_one_technician_cannot_both_win(runtime, session, known, site):
    data = {
        "type": "service",
        "starts_at": datetime.fromisoformat(NINE),
        "ends_at": datetime.fromisoformat(TEN),
        "technician_id": TECH,
    }
    outcome = {}
    with runtime.db.new_session() as first:
        appointments.schedule(first, first.get(Property, site["id"]), dict(data), SYSTEM)

        def second_booking():
            with runtime.db.new_session() as second:
                try:
                    appointments.schedule(second, second.get(Property, site["id"]), dict(data), SYSTEM)
                    second.commit()
                    outcome["second"] = "booked"
                except Problem as problem:
                    outcome["second"] = problem.status

        worker = threading.Thread(target=second_booking)
        worker.start()
        worker.join(0.3)
        assert worker.is_alive()  # waits for the first booking's lock
        first.commit()
    worker.join(15)
    assert outcome["second"] == 409
    assert session.scalar(select(func.count()).select_from(Appointment)) == 1
