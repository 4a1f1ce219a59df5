import json

import pytest
from sqlalchemy import select

from vigil_property.models import System
from vigil_shared.testing import assert_hidden, identity_with, unknown_path

CODES_VIEW = "confidential.installation_codes.view"
CODES_MODIFY = "confidential.installation_codes.modify"
PANEL = {
    "name": "DSC PowerSeries",
    "manufacturer": "DSC",
    "fields": [
        {"name": "ip_address", "label": "IP address", "required": True},
        {"name": "username", "label": "Installer login"},
        {"name": "password", "label": "Installer code", "required": True},
        {"name": "receiver_line", "label": "Receiver line", "required": True},
    ],
}


@pytest.fixture
def panel(api):
    response = api.post("/api/v1/system-kinds", json=PANEL)
    assert response.status_code == 201, response.json
    return response.json


def system_path(site, system_id=None):
    base = f"/api/v1/properties/{site['id']}/systems"
    return base if system_id is None else f"{base}/{system_id}"


def add_panel(api, site, panel, **extra):
    body = {
        "kind_id": panel["id"],
        "ip_address": "10.0.0.7",
        "port": 4025,
        "username": "installer",
        "password": "5555-secret",
        "version": "4.2",
        "details": {"receiver_line": "2"},
    } | extra
    return api.post(system_path(site), json=body)


def test_kinds_are_a_catalog_managed_by_admins(api, panel):
    assert panel["fields"][0] == {"name": "ip_address", "label": "IP address", "required": True}
    assert api.get(f"/api/v1/system-kinds/{panel['id']}").json == panel
    assert [k["name"] for k in api.get("/api/v1/system-kinds?q=dsc").json["items"]] == ["DSC PowerSeries"]
    taken = api.post("/api/v1/system-kinds", json={"name": "dsc powerseries"})
    assert taken.status_code == 409 and taken.json["errors"] == {"name": ["Already in use."]}
    viewer = api.as_(identity_with("properties.view"))
    assert viewer.get("/api/v1/system-kinds").status_code == 200
    refused = viewer.post("/api/v1/system-kinds", json={"name": "Hikvision NVR"})
    assert refused.status_code == 403 and refused.json["permission"] == "catalogs.manage"
    assert viewer.patch(f"/api/v1/system-kinds/{panel['id']}", json={"name": "x"}).status_code == 403
    renamed = api.patch(
        f"/api/v1/system-kinds/{panel['id']}", json={"name": "DSC Neo"}, headers={"If-Match": f'"{panel["id"]}.1"'}
    )
    assert renamed.status_code == 200 and renamed.json["name"] == "DSC Neo"
    assert (
        api.patch(
            f"/api/v1/system-kinds/{panel['id']}", json={"name": "x"}, headers={"If-Match": f'"{panel["id"]}.1"'}
        ).status_code
        == 412
    )


@pytest.mark.parametrize(
    "fields, field",
    [
        ([{"name": "Bad Name", "label": "x"}], "fields.0.name"),
        ([{"name": "a", "label": "x"}, {"name": "a", "label": "y"}], "fields"),
        ([{"name": "a"}], "fields.0.label"),
        ([{"name": "a", "label": "x", "secret": True}], "fields.0.secret"),
    ],
)
def test_kind_field_definitions_are_validated(api, fields, field):
    response = api.post("/api/v1/system-kinds", json={"name": "X", "fields": fields})
    assert response.status_code == 422 and field in response.json["errors"], response.json


def test_a_kind_in_use_cannot_be_deleted(api, site, panel):
    system = add_panel(api, site, panel).json
    refused = api.delete(f"/api/v1/system-kinds/{panel['id']}")
    assert refused.status_code == 409 and "in_use" not in refused.json
    assert api.delete(system_path(site, system["id"])).status_code == 204
    assert api.delete(f"/api/v1/system-kinds/{panel['id']}").status_code == 204
    assert api.get(f"/api/v1/system-kinds/{panel['id']}").status_code == 404


def test_assign_a_system_with_the_fields_its_kind_asks_for(api, session, site, panel):
    created = add_panel(api, site, panel)
    assert created.status_code == 201, created.json
    body = created.json
    assert body["kind_name"] == "DSC PowerSeries" and body["ip_address"] == "10.0.0.7" and body["port"] == 4025
    assert body["password"] == "5555-secret" and body["details"] == {"receiver_line": "2"}
    assert created.headers["Location"].endswith(system_path(site, body["id"]))
    assert api.get(system_path(site, body["id"])).json == body
    assert api.get(system_path(site)).json["items"] == [body]
    stored = session.scalar(select(System.password_encrypted))
    assert "5555" not in stored


def test_required_and_unknown_fields_of_the_kind(api, site, panel):
    missing = api.post(system_path(site), json={"kind_id": panel["id"], "details": {"colour": "red"}})
    assert missing.status_code == 422
    assert set(missing.json["errors"]) == {"ip_address", "password", "details.receiver_line", "details.colour"}
    bad = add_panel(api, site, panel, ip_address="10.0.0.300", port=70000, kind_id=999)
    assert bad.status_code == 422 and set(bad.json["errors"]) == {"ip_address", "port"}
    no_kind = add_panel(api, site, panel, kind_id=999)
    assert no_kind.status_code == 422 and no_kind.json["errors"] == {"kind_id": ["No such system kind."]}
    system = add_panel(api, site, panel).json
    emptied = api.patch(system_path(site, system["id"]), json={"ip_address": None, "details": {"receiver_line": None}})
    assert emptied.status_code == 422 and set(emptied.json["errors"]) == {"ip_address", "details.receiver_line"}
    kind_change = api.patch(system_path(site, system["id"]), json={"kind_id": panel["id"]})
    assert kind_change.status_code == 422 and set(kind_change.json["errors"]) == {"kind_id"}


def test_password_is_masked_and_its_change_needs_the_confidential_permission(api, site, panel):
    system = add_panel(api, site, panel).json
    path = system_path(site, system["id"])
    editor = api.as_(identity_with("properties.view", "properties.modify"))
    seen = editor.get(path)
    assert seen.json["password"] == "***" and "X-Vigil-Confidential-Reads" not in seen.headers
    refused = editor.patch(path, json={"password": "guess"})
    assert refused.status_code == 403 and set(refused.json["errors"]) == {"password"}
    assert editor.patch(path, json={"version": "4.3", "details": {"receiver_line": "3"}}).status_code == 200
    reader = api.as_(identity_with("properties.view", CODES_VIEW))
    clear = reader.get(path)
    assert clear.json["password"] == "5555-secret" and clear.json["version"] == "4.3"
    assert json.loads(clear.headers["X-Vigil-Confidential-Reads"]) == [
        {"target_type": "system", "target_id": str(system["id"]), "fields": ["password"]}
    ]
    keeper = api.as_(identity_with("properties.view", "properties.modify", CODES_MODIFY))
    assert keeper.patch(path, json={"password": "6666-new"}).status_code == 200
    assert api.get(path).json["password"] == "6666-new"


def test_a_system_sent_back_as_read_keeps_its_password(api, site, panel):
    """The masked password a caller was shown (``***``), sent back with the rest of the system, was saved
    as the panel's password: the real one was lost. It is no change now, for whoever sends it."""
    system = add_panel(api, site, panel).json
    path = system_path(site, system["id"])
    for rights in (("properties.view", "properties.modify", CODES_MODIFY), ("properties.view", "properties.modify")):
        editor = api.as_(identity_with(*rights))
        seen = editor.get(path).json
        assert seen["password"] == "***"
        echoed = editor.patch(path, json={"password": seen["password"], "version": "4.3"})
        assert echoed.status_code == 200 and echoed.json["version"] == "4.3"
        assert api.get(path).json["password"] == "5555-secret"
    assert not [
        e for e in api.get(f"/api/v1/properties/{site['id']}/history").json["items"] if e["field"] == "password"
    ]
    kind = api.post("/api/v1/system-kinds", json={"name": "Bare NVR"}).json
    for body in ({"kind_id": kind["id"], "password": "***"}, {"kind_id": kind["id"]}):
        made = api.post(system_path(site), json=body)
        if made.status_code == 201:
            refused = api.patch(system_path(site, made.json["id"]), json={"password": "***"})
        else:
            refused = made
        assert refused.status_code == 422 and set(refused.json["errors"]) == {"password"}


def test_a_password_may_be_entered_where_none_is_stored(api, site, known):
    kind = api.post("/api/v1/system-kinds", json={"name": "Hikvision NVR"}).json
    editor = api.as_(identity_with("properties.view", "properties.modify"))
    system = editor.post(system_path(site), json={"kind_id": kind["id"], "ip_address": "192.168.1.64"}).json
    assert system["password"] is None
    entered = editor.patch(system_path(site, system["id"]), json={"password": "first-one"})
    assert entered.status_code == 200 and entered.json["password"] == "***"


def test_system_changes_are_in_the_property_history_without_secrets(api, site, panel):
    system = add_panel(api, site, panel).json
    changed = api.patch(
        system_path(site, system["id"]),
        json={"password": "other", "details": {"receiver_line": "5"}, "ip_address": "10.0.0.8"},
    )
    assert changed.status_code == 200, changed.json
    history = api.get(f"/api/v1/properties/{site['id']}/history")
    assert "5555-secret" not in history.text and "other" not in history.text
    entries = [(e["action"], e["subject"], e["field"], e["old_value"], e["new_value"]) for e in history.json["items"]]
    subject = f"system {system['id']}"
    assert entries[:4] == [
        ("updated", subject, "password", "***", "***"),
        ("updated", subject, "details.receiver_line", "2", "5"),
        ("updated", subject, "ip_address", "10.0.0.7", "10.0.0.8"),
        ("system_added", subject, None, None, "DSC PowerSeries"),
    ]


def test_systems_follow_the_property_location_and_state(api, known, panel):
    known(8, location_id=2)
    there = api.post("/api/v1/customers/8/properties", json={}).json
    system = add_panel(api, there, panel).json
    clerk = api.as_(identity_with("properties.view", "properties.modify", "equipment.view", "equipment.modify"))
    for method, path, body in (
        ("GET", system_path(there), None),
        ("GET", system_path(there, system["id"]), None),
        ("PATCH", system_path(there, system["id"]), {"version": "5"}),
        ("POST", system_path(there), {"kind_id": panel["id"]}),
        ("GET", f"/api/v1/properties/{there['id']}/equipment", None),
    ):
        unknown = unknown_path(path, there["id"])
        assert_hidden(clerk.request(method, path, json=body), clerk.request(method, unknown, json=body))
    api.post(f"/api/v1/properties/{there['id']}/deactivate")
    frozen = api.patch(system_path(there, system["id"]), json={"version": "5"})
    assert frozen.status_code == 409
    assert add_panel(api, there, panel).status_code == 409
    assert api.get(system_path(there, system["id"])).status_code == 200
    assert api.get(system_path({"id": 999}, system["id"])).status_code == 404


def test_equipment_life_cycle(api, site):
    path = f"/api/v1/properties/{site['id']}/equipment"
    created = api.post(
        path,
        json={
            "item": "PIR motion sensor",
            "zone": "3",
            "serial_number": "SN-42",
            "install_date": "2026-03-01",
            "warranty_end": "2028-03-01",
        },
    )
    assert created.status_code == 201, created.json
    item = created.json
    assert item["status"] == "installed" and item["install_date"] == "2026-03-01"
    assert created.headers["Location"].endswith(f"{path}/{item['id']}")
    assert api.get(f"{path}/{item['id']}").json == item
    faulty = api.patch(f"{path}/{item['id']}", json={"status": "Faulty"}, headers={"If-Match": f'"{item["id"]}.1"'})
    assert faulty.status_code == 200 and faulty.json["status"] == "faulty"
    assert api.get(f"{path}?status=faulty").json["total"] == 1
    assert api.get(f"{path}?status=installed").json["total"] == 0
    backwards = api.patch(f"{path}/{item['id']}", json={"warranty_end": "2025-01-01"})
    assert backwards.status_code == 422 and set(backwards.json["errors"]) == {"warranty_end"}
    for bad in (
        {},
        {"item": ""},
        {"item": "x", "install_date": "yesterday"},
        {"item": "x", "status": "lost"},
        {"item": "x", "property_id": 3},
    ):
        assert api.post(path, json=bad).status_code == 422, bad
    assert api.delete(f"{path}/{item['id']}").status_code == 204
    assert api.get(f"{path}/{item['id']}").status_code == 404
    actions = [e["action"] for e in api.get(f"/api/v1/properties/{site['id']}/history").json["items"]]
    assert actions[:3] == ["equipment_deleted", "updated", "equipment_added"]


def test_equipment_permissions(api, site):
    path = f"/api/v1/properties/{site['id']}/equipment"
    viewer = api.as_(identity_with("equipment.view"))
    assert viewer.get(path).status_code == 200
    refused = viewer.post(path, json={"item": "Keypad"})
    assert refused.status_code == 403 and refused.json["permission"] == "equipment.modify"
    assert api.as_(identity_with("properties.view")).get(path).json["permission"] == "equipment.view"


def test_rotate_keys_covers_system_passwords(app):
    from vigil_property.app import program

    assert System.password_encrypted in program.encrypted_columns
