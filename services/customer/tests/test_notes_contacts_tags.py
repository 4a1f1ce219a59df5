"""Notes and tickets, contacts, and tags of a record."""

import json

from helpers import create, customer

from vigil_shared.identity import service_identity
from vigil_shared.testing import assert_hidden, identity_with, unknown_path


def as_(api, *permissions, locations=(1,)):
    return api.as_(identity_with(*permissions, locations=locations))


def history_actions(api, customer_id):
    entries = api.get(f"/api/v1/customers/{customer_id}/history?per_page=100").json["items"]
    return [(e["action"], e["field"], e["old_value"], e["new_value"]) for e in entries]


# --- notes and tickets ----------------------------------------------------------------------------


def test_notes_urgent_first_and_tickets_with_their_fields(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}/notes"
    first = api.post(url, json={"text": "First call"}).json
    urgent = api.post(url, json={"text": "Dog on premises", "urgent": True}).json
    ticket = api.post(
        url,
        json={
            "kind": "ticket",
            "text": "Replace battery",
            "assignee": "tech1",
            "due_date": "2026-12-01",
            "priority": "high",
        },
    ).json
    assert ticket["status"] == "open" and ticket["priority"] == "high" and ticket["assignee"] == "tech1"
    listed = api.get(url).json
    assert [n["id"] for n in listed["items"]] == [urgent["id"], ticket["id"], first["id"]]
    assert api.get(f"{url}?kind=ticket").json["total"] == 1
    closed = api.patch(f"{url}/{ticket['id']}", json={"status": "closed"})
    assert closed.status_code == 200 and closed.json["status"] == "closed"
    assert api.get(f"{url}?open=true").json["total"] == 2
    assert api.get(f"{url}?open=false").json["total"] == 1
    assert api.get(f"{url}?status=closed").json["items"][0]["id"] == ticket["id"]


def test_note_rules(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}/notes"
    assert api.post(url, json={"text": ""}).status_code == 422
    stray = api.post(url, json={"text": "x", "assignee": "tech1"})
    assert stray.status_code == 422 and stray.json["errors"] == {"assignee": ["Only tickets have this field."]}
    ticket = api.post(url, json={"kind": "ticket", "text": "t"})
    assert api.patch(f"{url}/{ticket.json['id']}", json={"status": None}).status_code == 422
    assert api.patch(f"{url}/{ticket.json['id']}", json={"kind": "note"}).status_code == 422
    stale = ticket.headers["ETag"]
    assert api.patch(f"{url}/{ticket.json['id']}", json={"text": "t2"}, headers={"If-Match": stale}).status_code == 200
    assert api.patch(f"{url}/{ticket.json['id']}", json={"text": "t3"}, headers={"If-Match": stale}).status_code == 412
    assert api.delete(f"{url}/{ticket.json['id']}", headers={"If-Match": stale}).status_code == 412
    assert api.delete(f"{url}/{ticket.json['id']}").status_code == 204
    assert api.get(f"{url}/{ticket.json['id']}").status_code == 404
    actions = [a[0] for a in history_actions(api, record["id"])]
    assert actions[:3] == ["ticket_delete", "ticket_update", "ticket_add"]


def test_notes_need_their_permission_at_the_records_location(api):
    here = create(api)
    there = create(api, customer(location_id=2))
    reader = as_(api, "notes.view")
    assert reader.get(f"/api/v1/customers/{here['id']}/notes").status_code == 200
    notes = f"/api/v1/customers/{there['id']}/notes"
    assert_hidden(reader.get(notes), reader.get(unknown_path(notes, there["id"])))
    assert reader.post(f"/api/v1/customers/{here['id']}/notes", json={"text": "x"}).status_code == 403
    writer = as_(api, "notes.modify")
    assert writer.post(f"/api/v1/customers/{here['id']}/notes", json={"text": "x"}).status_code == 201
    assert api.get("/api/v1/customers/99999/notes").status_code == 404


def test_notes_mark_activity_without_changing_the_records_etag(api):
    created = api.post("/api/v1/customers", json=customer())
    record, etag = created.json, created.headers["ETag"]
    api.post(f"/api/v1/customers/{record['id']}/notes", json={"text": "hello"})
    after = api.get(f"/api/v1/customers/{record['id']}")
    assert after.headers["ETag"] == etag
    assert after.json["last_activity_at"] >= record["last_activity_at"]


# --- contacts -------------------------------------------------------------------------------------


def test_emergency_contacts_in_call_order_with_a_masked_passcode(api):
    record = create(api, customer(state="ON", primary_phone="613-555-0100"))
    url = f"/api/v1/customers/{record['id']}/contacts"
    first = api.post(
        url,
        json={
            "type": "emergency",
            "name": "Ann",
            "relation": "neighbour",
            "has_key": True,
            "phones": [{"label": "cell", "number": "613-555-0111"}],
            "passcode": "blue",
        },
    ).json
    second = api.post(url, json={"type": "emergency", "name": "Bob", "relation": "son"}).json
    jumper = api.post(url, json={"type": "emergency", "name": "Cid", "call_priority": 1}).json
    api.post(
        url,
        json={"type": "other", "name": "Accountant", "role": "billing", "email": "acc@example.com", "is_primary": True},
    )
    assert (first["call_priority"], second["call_priority"], jumper["call_priority"]) == (1, 2, 1)
    emergency = api.get(f"{url}?type=emergency").json["items"]
    assert [(c["name"], c["call_priority"]) for c in emergency] == [("Cid", 1), ("Ann", 2), ("Bob", 3)]
    assert emergency[1]["phones"] == [{"label": "cell", "number": "613-555-0111"}]
    assert emergency[1]["has_key"] is True and emergency[1]["passcode"] == "blue"
    everyone = api.get(url).json["items"]
    assert [c["name"] for c in everyone] == ["Cid", "Ann", "Bob", "Accountant"] and everyone[3]["is_primary"]

    technician = api.as_(service_identity("gateway", {"contacts.view"}))
    seen = technician.get(f"{url}?type=emergency")
    assert seen.status_code == 200 and seen.json["items"][1]["passcode"] == "***"
    assert "blue" not in seen.get_data(as_text=True)

    api.delete(f"{url}/{jumper['id']}")
    assert [(c["name"], c["call_priority"]) for c in api.get(f"{url}?type=emergency").json["items"]] == [
        ("Ann", 1),
        ("Bob", 2),
    ]
    moved = api.patch(f"{url}/{second['id']}", json={"call_priority": 1})
    assert moved.status_code == 200 and moved.json["call_priority"] == 1
    assert [c["name"] for c in api.get(f"{url}?type=emergency").json["items"]] == ["Bob", "Ann"]


def test_unmasked_passcodes_are_reported_for_the_audit_log(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}/contacts"
    contact = api.post(url, json={"type": "emergency", "name": "Ann", "passcode": "blue"}).json
    listed = api.get(url)
    assert json.loads(listed.headers["X-Vigil-Confidential-Reads"]) == [
        {"target_type": "customer_contact", "target_id": str(contact["id"]), "fields": ["passcode"]}
    ]


def test_a_saved_passcode_needs_the_confidential_permission_to_change(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}/contacts"
    editor = as_(api, "contacts.view", "contacts.modify")
    contact = editor.post(url, json={"type": "emergency", "name": "Ann"}).json
    entered = editor.patch(f"{url}/{contact['id']}", json={"passcode": "blue"})
    assert entered.status_code == 200 and entered.json["passcode"] == "***"
    echo = editor.patch(f"{url}/{contact['id']}", json={"passcode": "***", "has_key": True})
    assert echo.status_code == 200 and echo.json["has_key"] is True
    refused = editor.patch(f"{url}/{contact['id']}", json={"passcode": "red"})
    assert refused.status_code == 403 and refused.json["permission"] == "confidential.installation_codes.modify"
    changed = api.patch(f"{url}/{contact['id']}", json={"passcode": "red"})
    assert changed.json["passcode"] == "red"
    passcode_history = [a for a in history_actions(api, record["id"]) if a[1] == "passcode"]
    assert passcode_history[0][2:] == ("blue", "red")
    reader = as_(api, "history.view", "contacts.view")
    masked_history = reader.get(f"/api/v1/customers/{record['id']}/history?field=passcode")
    assert [(e["old_value"], e["new_value"]) for e in masked_history.json["items"]][0] == ("***", "***")


def test_a_passcode_masked_for_the_caller_cannot_be_guessed_by_sending_it_back(api):
    """Sending the saved passcode answered 200 ("unchanged") and any other 403: a caller who sees only
    ``***`` could try passcodes without limit and learn the right one."""
    record = create(api)
    url = f"/api/v1/customers/{record['id']}/contacts"
    contact = api.post(url, json={"type": "emergency", "name": "Ann", "passcode": "blue-42"}).json
    editor = as_(api, "contacts.view", "contacts.modify")
    answers = [editor.patch(f"{url}/{contact['id']}", json={"passcode": guess}) for guess in ("red-1", "blue-42")]
    assert [a.status_code for a in answers] == [403, 403]
    assert answers[0].json["errors"] == answers[1].json["errors"]
    copied = api.post(url, json={"type": "emergency", "name": "Ann again", "passcode": "***"})
    assert copied.status_code == 422 and set(copied.json["errors"]) == {"passcode"}  # a mask is never a passcode
    reader = as_(api, "contacts.view", "contacts.modify", "confidential.installation_codes.view")
    unchanged = reader.patch(f"{url}/{contact['id']}", json={"passcode": "blue-42", "has_key": True})
    assert unchanged.status_code == 200 and unchanged.json["passcode"] == "blue-42"  # seen, so sent back as is


def test_contact_rules(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}/contacts"
    assert api.post(url, json={"name": "x"}).status_code == 422
    stray = api.post(url, json={"type": "other", "name": "x", "relation": "son"})
    assert stray.json["errors"] == {"relation": ["Only emergency contacts have this field."]}
    bad_phone = api.post(url, json={"type": "other", "name": "x", "phones": [{"number": "12"}]})
    assert bad_phone.status_code == 422 and "phones.0.number" in bad_phone.json["errors"]
    first = api.post(url, json={"type": "other", "name": "A", "is_primary": True}).json
    second = api.post(url, json={"type": "other", "name": "B", "is_primary": True}).json
    assert api.get(f"{url}/{first['id']}").json["is_primary"] is False
    assert api.get(f"{url}/{second['id']}").json["is_primary"] is True
    assert api.patch(f"{url}/{first['id']}", json={"type": "emergency"}).status_code == 422


# --- tags -----------------------------------------------------------------------------------------


def test_tag_catalog_needs_catalogs_manage(api):
    created = api.post("/api/v1/tags", json={"name": "VIP", "color": "#ff0000"})
    assert created.status_code == 201
    assert api.post("/api/v1/tags", json={"name": "vip"}).status_code == 409
    assert api.post("/api/v1/tags", json={"name": "x", "color": "red"}).status_code == 422
    clerk = as_(api, "tags.view", "tags.modify")
    assert clerk.post("/api/v1/tags", json={"name": "Other"}).status_code == 403
    assert clerk.get("/api/v1/tags").json["items"][0]["name"] == "VIP"
    assert clerk.get("/api/v1/tags?q=v").json["total"] == 1
    renamed = api.patch(f"/api/v1/tags/{created.json['id']}", json={"name": "Gold"})
    assert renamed.status_code == 200 and renamed.json["name"] == "Gold"


def test_apply_remove_list_and_filter_by_tag(api):
    vip = api.post("/api/v1/tags", json={"name": "VIP"}).json
    api.post("/api/v1/tags", json={"name": "Late payer"})
    tagged = create(api, customer(first_name="Tagged"))
    plain = create(api, customer(first_name="Plain"))
    url = f"/api/v1/customers/{tagged['id']}/tags"
    assert api.post(url, json={"tag_id": vip["id"]}).status_code == 201
    assert api.post(url, json={"tag_id": vip["id"]}).status_code == 200, "applying twice is harmless"
    assert api.post(url, json={"name": "late PAYER"}).status_code == 201
    assert api.post(url, json={"name": "nope"}).status_code == 404
    assert api.post(url, json={}).status_code == 422
    assert [t["name"] for t in api.get(url).json["items"]] == ["Late payer", "VIP"]
    assert [t["name"] for t in api.get(f"/api/v1/customers/{tagged['id']}").json["tags"]] == ["Late payer", "VIP"]
    listed = api.get("/api/v1/customers?tag=vip").json
    assert [c["id"] for c in listed["items"]] == [tagged["id"]] and listed["items"][0]["tags"][1]["name"] == "VIP"
    assert api.get("/api/v1/customers?tag=vip&tag=late%20payer").json["total"] == 1
    assert api.get("/api/v1/customers?tag=vip&q=plain").json["total"] == 0
    assert api.delete(f"{url}/{vip['id']}").status_code == 204
    assert api.delete(f"{url}/{vip['id']}").status_code == 404
    assert api.get("/api/v1/customers?tag=vip").json["total"] == 0
    assert ("tag_remove", "tags", "VIP", None) in history_actions(api, tagged["id"])
    assert plain["id"]


def test_tags_on_a_record_need_the_permission_at_its_location(api):
    tag = api.post("/api/v1/tags", json={"name": "VIP"}).json
    there = create(api, customer(location_id=2))
    clerk = as_(api, "tags.view", "tags.modify", "customers.view")
    tags = f"/api/v1/customers/{there['id']}/tags"
    assert_hidden(
        clerk.post(tags, json={"tag_id": tag["id"]}),
        clerk.post(unknown_path(tags, there["id"]), json={"tag_id": tag["id"]}),
    )
    hidden = as_(api, "customers.view").get("/api/v1/customers?per_page=5").json
    assert all("tags" not in item for item in hidden["items"])


def test_deleting_a_catalog_tag_removes_it_everywhere(api):
    tag = api.post("/api/v1/tags", json={"name": "VIP"}).json
    record = create(api)
    api.post(f"/api/v1/customers/{record['id']}/tags", json={"tag_id": tag["id"]})
    assert api.delete(f"/api/v1/tags/{tag['id']}").status_code == 204
    assert api.get(f"/api/v1/customers/{record['id']}/tags").json["total"] == 0


def test_deleting_a_tag_tells_nothing_of_the_records_that_had_it(api, session):
    """The catalog is company-wide, its manager may be scoped to some offices: the answer to a delete, and
    what the domain gives back to any caller that could pass it on, counts no record of any office."""
    from vigil_customer import tags as domain

    tag = api.post("/api/v1/tags", json={"name": "VIP"}).json
    elsewhere = create(api, customer(location_id=2))
    api.post(f"/api/v1/customers/{elsewhere['id']}/tags", json={"tag_id": tag["id"]})
    manager = as_(api, "catalogs.manage", "tags.view", "customers.view")
    deleted = manager.delete(f"/api/v1/tags/{tag['id']}")
    assert deleted.status_code == 204 and deleted.get_data() == b""
    other = api.post("/api/v1/tags", json={"name": "Gold"}).json
    api.post(f"/api/v1/customers/{elsewhere['id']}/tags", json={"tag_id": other["id"]})
    assert domain.delete_tag(session, domain.get_tag(session, other["id"])) is None


def _call_list(api, url):
    return [(c["name"], c["call_priority"]) for c in api.get(f"{url}?type=emergency").json["items"]]


def test_moving_an_emergency_contact_keeps_a_clean_call_order_either_way(api):
    """Regression: Ann from 1 to 3 of 3 gave Bob 2, Ann 3, Cy 4 and no 1."""
    record = create(api)
    url = f"/api/v1/customers/{record['id']}/contacts"
    ids = {name: api.post(url, json={"type": "emergency", "name": name}).json["id"] for name in ("Ann", "Bob", "Cy")}
    assert _call_list(api, url) == [("Ann", 1), ("Bob", 2), ("Cy", 3)]

    def move(name, priority):
        response = api.patch(f"{url}/{ids[name]}", json={"call_priority": priority})
        assert response.status_code == 200, response.json
        return response.json["call_priority"]

    assert move("Ann", 3) == 3 and _call_list(api, url) == [("Bob", 1), ("Cy", 2), ("Ann", 3)]  # down to the end
    assert move("Ann", 1) == 1 and _call_list(api, url) == [("Ann", 1), ("Bob", 2), ("Cy", 3)]  # up to the top
    assert move("Ann", 2) == 2 and _call_list(api, url) == [("Bob", 1), ("Ann", 2), ("Cy", 3)]  # down one
    assert move("Cy", 1) == 1 and _call_list(api, url) == [("Cy", 1), ("Bob", 2), ("Ann", 3)]  # up two
    assert move("Bob", 99) == 3 and _call_list(api, url) == [("Cy", 1), ("Ann", 2), ("Bob", 3)]  # beyond the end
    assert move("Ann", 2) == 2 and _call_list(api, url) == [("Cy", 1), ("Ann", 2), ("Bob", 3)]  # same place
    added = api.post(url, json={"type": "emergency", "name": "Dee", "call_priority": 50}).json
    assert added["call_priority"] == 4
    api.post(url, json={"type": "emergency", "name": "Eve", "call_priority": 2})
    assert _call_list(api, url) == [("Cy", 1), ("Eve", 2), ("Ann", 3), ("Bob", 4), ("Dee", 5)]
    assert api.delete(f"{url}/{ids['Ann']}").status_code == 204
    assert _call_list(api, url) == [("Cy", 1), ("Eve", 2), ("Bob", 3), ("Dee", 4)]
