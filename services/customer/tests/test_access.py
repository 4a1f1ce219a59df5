"""Rights inside the customer service: locations, sections, confidential fields, mass assignment."""

import json

import pytest
from helpers import create, customer, lead

from vigil_shared.identity import service_identity
from vigil_shared.testing import ADMIN, assert_hidden, identity_with, unknown_path

READ = ("customers.view",)
EDIT = ("customers.view", "customers.modify", "customers.contact_info.modify")
SECRET = {
    "ssn": "123-45-6789",
    "birthdate": "1980-02-03",
    "confirmation_number": "CONF-77",
    "receiver_number": "RCV-88",
    "abort_code": "4242",
}


def as_(api, *permissions, locations=(1,), username="clerk"):
    return api.as_(identity_with(*permissions, locations=locations, username=username))


def confidential_reads(response):
    header = response.headers.get("X-Vigil-Confidential-Reads")
    return json.loads(header) if header else []


def test_a_record_in_a_location_you_cannot_view_answers_like_an_unknown_id(api):
    other = create(api, customer(location_id=2))
    clerk = as_(api, *READ)
    path = f"/api/v1/customers/{other['id']}"
    assert_hidden(clerk.get(path), clerk.get(unknown_path(path, other["id"])))


def test_a_caller_holding_no_right_where_a_lead_is_gets_404_and_one_holding_rights_there_403(api):
    """``leads.view`` held nowhere: where the caller holds nothing the lead is hidden like an unknown id;
    where they hold other rights, 403 (what they lack does not depend on which record)."""
    there, here = create(api, lead(location_id=2)), create(api, lead(location_id=1))
    clerk = as_(api, *READ, locations=(1,))
    path = f"/api/v1/customers/{there['id']}"
    assert_hidden(clerk.get(path), clerk.get(unknown_path(path, there["id"])))
    assert clerk.get(f"/api/v1/customers/{here['id']}").json["permission"] == "leads.view"


def test_callers_without_the_permission_anywhere_are_refused_on_every_operation(api):
    record = create(api)
    nobody = as_(api, "notes.view")
    assert nobody.get("/api/v1/customers").status_code == 403
    assert nobody.get(f"/api/v1/customers/{record['id']}").status_code == 403
    assert nobody.post("/api/v1/customers", json=customer()).status_code == 403
    assert nobody.patch(f"/api/v1/customers/{record['id']}", json={"spouse": "x"}).status_code == 403
    assert nobody.delete(f"/api/v1/customers/{record['id']}").status_code == 403


def test_modify_and_delete_check_the_records_own_location(api):
    there = create(api, customer(location_id=2))
    editor = as_(api, *EDIT, "customers.delete", locations=(1,))
    path = f"/api/v1/customers/{there['id']}"
    unknown = unknown_path(path, there["id"])
    assert_hidden(editor.patch(path, json={"spouse": "x"}), editor.patch(unknown, json={"spouse": "x"}))
    assert_hidden(editor.delete(path), editor.delete(unknown))
    assert api.get(f"/api/v1/customers/{there['id']}").json["spouse"] is None


def test_creating_needs_create_in_the_target_location(api):
    creator = as_(api, "customers.view", "customers.create", locations=(1,))
    refused = creator.post("/api/v1/customers", json=customer(location_id=2))
    assert refused.status_code == 403 and "location_id" in refused.json["errors"]
    assert creator.post("/api/v1/customers", json=customer(location_id=1)).status_code == 201


def test_lists_only_show_locations_you_may_view(api):
    mine = create(api, customer(location_id=1, first_name="Mine"))
    create(api, customer(location_id=2, first_name="Theirs"))
    listed = as_(api, *READ).get("/api/v1/customers")
    assert [item["id"] for item in listed.json["items"]] == [mine["id"]] and listed.json["total"] == 1
    searched = as_(api, *READ).get("/api/v1/customers?q=theirs")
    assert searched.json["total"] == 0
    assert api.get("/api/v1/customers").json["total"] == 2  # the admin sees both


def test_a_service_identity_sees_every_location(api):
    create(api, customer(location_id=1))
    create(api, customer(location_id=2))
    service = api.as_(service_identity("gateway", {"customers.view"}))
    assert service.get("/api/v1/customers").json["total"] == 2


def test_leads_need_lead_permissions(api):
    a_lead = create(api, lead())
    customers_only = as_(api, "customers.view", "customers.create")
    assert customers_only.get(f"/api/v1/customers/{a_lead['id']}").json["permission"] == "leads.view"
    assert customers_only.get("/api/v1/customers").json["total"] == 0
    refused = customers_only.post("/api/v1/customers", json=lead())
    assert refused.status_code == 403 and refused.json["permission"] == "leads.create"
    both = as_(api, "customers.view", "leads.view")
    assert both.get(f"/api/v1/customers/{a_lead['id']}").status_code == 200
    assert both.get("/api/v1/customers?kind=lead").json["total"] == 1
    lead_editor = as_(api, "customers.modify", "leads.view", "customers.contact_info.modify")
    assert (
        lead_editor.patch(f"/api/v1/customers/{a_lead['id']}", json={"spouse": "x"}).json["permission"]
        == "leads.modify"
    )


def test_contact_fields_need_the_contact_information_permission(api):
    record = create(api)
    no_contact = as_(api, "customers.view", "customers.modify")
    refused = no_contact.patch(f"/api/v1/customers/{record['id']}", json={"first_name": "New", "notes": "ok"})
    assert refused.status_code == 403
    assert refused.json["errors"] == {"first_name": ["Needs the 'customers.contact_info.modify' permission."]}
    assert api.get(f"/api/v1/customers/{record['id']}").json["notes"] is None, "nothing changed"
    assert no_contact.patch(f"/api/v1/customers/{record['id']}", json={"notes": "ok"}).status_code == 200
    unchanged = no_contact.patch(f"/api/v1/customers/{record['id']}", json={"first_name": record["first_name"]})
    assert unchanged.status_code == 200, "sending back a value you may see but not change is not a change"


def test_sections_are_hidden_without_view_and_locked_without_modify(api):
    record = create(api, customer(sale_date="2026-01-01", install_tech="tech"))
    plain = as_(api, *EDIT).get(f"/api/v1/customers/{record['id']}").json
    assert "sale_date" not in plain and "install_tech" not in plain and "two_way_voice" not in plain
    assert plain["first_name"] == "Dana"
    viewer = as_(api, *EDIT, "customers.sale_info.view", "customers.installation_info.view")
    seen = viewer.get(f"/api/v1/customers/{record['id']}").json
    assert seen["sale_date"] == "2026-01-01" and seen["install_tech"] == "tech"
    refused = viewer.patch(f"/api/v1/customers/{record['id']}", json={"sold_by": "me", "installed": True})
    assert refused.status_code == 403 and set(refused.json["errors"]) == {"sold_by", "installed"}
    hidden = as_(api, *EDIT).patch(f"/api/v1/customers/{record['id']}", json={"sale_date": "2026-01-01"})
    assert hidden.status_code == 403, "a hidden field cannot be probed by sending its current value"
    editor = as_(api, *EDIT, "customers.sale_info.view", "customers.sale_info.modify")
    assert editor.patch(f"/api/v1/customers/{record['id']}", json={"sold_by": "me"}).json["sold_by"] == "me"


def test_confidential_fields_are_masked_without_permission(api):
    record = create(api, customer(**SECRET))
    clerk = as_(api, *READ, "customers.installation_info.view")
    seen = clerk.get(f"/api/v1/customers/{record['id']}")
    assert seen.json["ssn"] == "***-**-6789" and seen.json["birthdate"] == "***"
    assert seen.json["confirmation_number"] == seen.json["receiver_number"] == seen.json["abort_code"] == "***"
    assert confidential_reads(seen) == []
    assert "123-45-6789" not in seen.get_data(as_text=True)


def test_unmasked_reads_are_reported_for_the_audit_log(api):
    record = create(api, customer(**SECRET))
    reader = as_(api, *READ, "confidential.ssn.view", "confidential.birthdate.view")
    seen = reader.get(f"/api/v1/customers/{record['id']}")
    assert seen.json["ssn"] == "123-45-6789" and seen.json["birthdate"] == "1980-02-03"
    assert confidential_reads(seen) == [
        {"target_type": "customer", "target_id": str(record["id"]), "fields": ["birthdate", "ssn"]}
    ]
    full = api.get(f"/api/v1/customers/{record['id']}")
    assert confidential_reads(full)[0]["fields"] == [
        "abort_code",
        "birthdate",
        "confirmation_number",
        "receiver_number",
        "ssn",
    ]


def test_an_ssn_may_be_entered_where_none_exists_but_changing_it_needs_the_confidential_permission(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}"
    editor = as_(api, *EDIT)
    entered = editor.patch(url, json={"ssn": "123-45-6789"})
    assert entered.status_code == 200 and entered.json["ssn"] == "***-**-6789"
    changed = editor.patch(url, json={"ssn": "234-56-7890"})
    assert changed.status_code == 403 and changed.json["permission"] == "confidential.ssn.modify"
    cleared = editor.patch(url, json={"ssn": None})
    assert cleared.status_code == 403
    echo = editor.patch(url, json={"ssn": "***-**-6789", "spouse": "Sam"})
    assert echo.status_code == 200 and echo.json["spouse"] == "Sam", "the masked value sent back changes nothing"
    bogus_mask = editor.patch(url, json={"ssn": "***-**-0000"})
    assert bogus_mask.status_code in (403, 422)
    allowed = as_(api, *EDIT, "confidential.ssn.modify", "confidential.ssn.view")
    assert allowed.patch(url, json={"ssn": "234-56-7890"}).json["ssn"] == "234-56-7890"


def test_installation_codes_follow_the_same_rule(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}"
    installer = as_(api, *EDIT, "customers.installation_info.view", "customers.installation_info.modify")
    assert installer.patch(url, json={"abort_code": "1111"}).json["abort_code"] == "***"
    refused = installer.patch(url, json={"abort_code": "2222"})
    assert refused.json["permission"] == "confidential.installation_codes.modify"


def test_credit_score_needs_the_credit_permission(api):
    record = create(api)
    url = f"/api/v1/customers/{record['id']}"
    refused = as_(api, *EDIT).patch(url, json={"credit_score": 720})
    assert refused.status_code == 403 and refused.json["errors"] == {
        "credit_score": ["Needs the 'credit.create' permission."]
    }
    assert as_(api, *EDIT, "credit.create").patch(url, json={"credit_score": 720}).json["credit_grade"] == "A"


@pytest.mark.parametrize("field,value", [("location_id", 2), ("credit_score", 800), ("credit_tracking_number", "X")])
def test_mass_assignment_is_refused_and_changes_nothing(api, field, value):
    record = create(api)
    editor = as_(api, *EDIT, locations=(1,))
    response = editor.patch(f"/api/v1/customers/{record['id']}", json={field: value, "spouse": "Sam"})
    assert response.status_code == 403 and field in response.json["errors"]
    after = api.get(f"/api/v1/customers/{record['id']}").json
    assert after["spouse"] is None and after[field] == record[field]


def test_moving_a_record_needs_modify_in_both_locations(api):
    record = create(api)
    mover = as_(api, *EDIT, locations=(1, 2))
    moved = mover.patch(f"/api/v1/customers/{record['id']}", json={"location_id": 2})
    assert moved.status_code == 200 and moved.json["location_id"] == 2


def test_history_masks_confidential_values(api):
    record = create(api, customer(ssn="123-45-6789"))
    api.patch(f"/api/v1/customers/{record['id']}", json={"ssn": "234-56-7890"})
    reader = as_(api, *READ, "history.view")
    entries = reader.get(f"/api/v1/customers/{record['id']}/history?field=ssn").json["items"]
    assert [(e["old_value"], e["new_value"]) for e in entries] == [
        ("***-**-6789", "***-**-7890"),
        (None, "***-**-6789"),
    ]
    full = api.get(f"/api/v1/customers/{record['id']}/history?field=ssn")
    assert full.json["items"][0]["new_value"] == "234-56-7890"
    assert confidential_reads(full) == [
        {"target_type": "customer_history", "target_id": str(record["id"]), "fields": ["ssn"]}
    ]


def test_history_leaves_out_sections_the_reader_may_not_view(api):
    record = create(api, customer(sold_by="rep"))
    reader = as_(api, *READ, "history.view")
    fields = {e["field"] for e in reader.get(f"/api/v1/customers/{record['id']}/history?per_page=100").json["items"]}
    assert "sold_by" not in fields and "first_name" in fields


def test_the_history_shows_no_tab_the_reader_may_not_view(api):
    """A note's text, a contact's name and a file's name are written to the record's history: a reader
    holding ``history.view`` but not the tab's own permission read them there."""
    record = create(api)
    base = f"/api/v1/customers/{record['id']}"
    assert api.post(f"{base}/notes", json={"text": "Key under the mat"}).status_code == 201
    contact = {"type": "emergency", "name": "Nora Neighbour", "phones": [{"label": "m", "number": "801-555-0199"}]}
    assert api.post(f"{base}/contacts", json=contact).status_code == 201
    reader = as_(api, *READ, "history.view")
    assert reader.get(f"{base}/notes").status_code == reader.get(f"{base}/contacts").status_code == 403
    seen = reader.get(f"{base}/history", query_string={"per_page": 100}).json
    assert {e["target_type"] for e in seen["items"]} == {"customer"} and seen["total"] == len(seen["items"])
    assert "Key under the mat" not in json.dumps(seen) and "Nora" not in json.dumps(seen)
    tabs = as_(api, *READ, "history.view", "notes.view", "contacts.view")
    shown = {e["target_type"] for e in tabs.get(f"{base}/history", query_string={"per_page": 100}).json["items"]}
    assert shown == {"customer", "note", "contact"}


def test_the_history_does_not_count_the_changes_it_leaves_out(api):
    """The hidden entries were left out of the page but not of its ``total``: narrowed by ``field`` and a
    time range, the count told how often and when a field the reader may not view had changed."""
    record = create(api, customer(sold_by="rep"))
    for rep in ("rep 2", "rep 3"):
        assert api.patch(f"/api/v1/customers/{record['id']}", json={"sold_by": rep}).status_code == 200
    path = f"/api/v1/customers/{record['id']}/history"
    assert api.get(path, query_string={"field": "sold_by"}).json["total"] == 3
    reader = as_(api, *READ, "history.view")
    hidden = reader.get(path, query_string={"field": "sold_by"}).json
    assert (hidden["total"], hidden["items"]) == (0, [])
    everything = reader.get(path, query_string={"per_page": 1}).json
    visible = {e["field"] for e in reader.get(path, query_string={"per_page": 100}).json["items"]}
    assert everything["total"] == len(reader.get(path, query_string={"per_page": 100}).json["items"])
    assert "sold_by" not in visible


def test_the_admin_fixture_holds_everything():
    assert ADMIN.can("confidential.ssn.view", 1) and ADMIN.can("customers.modify", 2)


def test_the_records_location_is_checked_before_the_body(api):
    home = create(api)
    base = f"/api/v1/customers/{home['id']}"
    for permission, method, path in (
        ("customers.modify", "PATCH", base),
        ("leads.modify", "POST", f"{base}/convert"),
        ("customers.create", "POST", f"{base}/duplicate"),
        ("notes.modify", "POST", f"{base}/notes"),
        ("contacts.modify", "POST", f"{base}/contacts"),
        ("tags.modify", "POST", f"{base}/tags"),
        ("files.modify", "POST", f"{base}/files"),
    ):
        outsider = as_(api, permission, locations=(2,))
        response = outsider.open(method, path, json={"not": "valid"})
        unknown = outsider.open(method, unknown_path(path, home["id"]), json={"not": "valid"})
        assert_hidden(response, unknown)


def test_the_archive_targets_never_name_a_sub_customer_where_the_caller_may_not_archive(api):
    """Archiving a parent cascades to its subs, and is refused when one is where the caller may not
    archive; the list of who would be archived is refused alike, naming no one it may not see."""
    parent = create(api, customer(last_name="Parentson"))
    create(api, customer(location_id=2, last_name="Hiddenstone", parent_customer_id=parent["id"]))
    archivist = as_(api, "customers.view", "customers.archive")
    refused = archivist.get(f"/api/v1/customers/{parent['id']}/archive-targets")
    assert refused.status_code == 403, refused.json
    assert "Hiddenstone" not in refused.get_data(as_text=True)
    everywhere = as_(api, "customers.view", "customers.archive", locations=(1, 2))
    listed = everywhere.get(f"/api/v1/customers/{parent['id']}/archive-targets")
    assert listed.status_code == 200 and [s["name"] for s in listed.json["sub_customers"]] == ["Dana Hiddenstone"]


def test_a_parent_is_only_one_the_caller_may_view(api):
    """A sub-customer's invoices are billed to its parent: linking one to a customer of an office the
    caller does not hold put debts on that office's account, and the answer told which ids exist there
    and which are sub-customers. Such a parent answers as an unknown id does."""
    there = create(api, customer(location_id=2, last_name="Farparent"))
    there_sub = create(api, customer(location_id=2, last_name="Farsub", parent_customer_id=there["id"]))
    mine = create(api, customer(last_name="Nearsub"))
    sales = ("customers.sale_info.view", "customers.sale_info.modify")
    clerk = as_(api, *EDIT, *sales, "customers.create")
    path = f"/api/v1/customers/{mine['id']}"
    unknown = clerk.patch(path, json={"parent_customer_id": 99_999})
    assert unknown.status_code == 422, unknown.json
    for parent_id in (there["id"], there_sub["id"]):
        refused = clerk.patch(path, json={"parent_customer_id": parent_id})
        assert (refused.status_code, refused.json["errors"]) == (unknown.status_code, unknown.json["errors"])
        body = customer(last_name="Newsub", parent_customer_id=parent_id)
        created = clerk.post("/api/v1/customers?allow_duplicates=true", json=body)
        assert (created.status_code, created.json["errors"]) == (unknown.status_code, unknown.json["errors"])
    assert api.get(path).json["parent_customer_id"] is None
    both = as_(api, *EDIT, *sales, locations=(1, 2))
    linked = both.patch(path, json={"parent_customer_id": there["id"]})
    assert linked.status_code == 200 and linked.json["parent_customer_id"] == there["id"]
