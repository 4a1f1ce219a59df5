"""Oracles through the public API: no filter, relation, validator or conditional request tells a caller
with limited rights a value they may not see (a tag, the parent customer, an SSN, a credit result).

Each test plays the attacker: a signed-in user of one office, without the right to the value, asking
through the gateway, the only door."""

from __future__ import annotations

import secrets
import uuid

from conftest import Gateway, customer_body, new_customer, unique_phone

SSN = "219-09-4417"


def test_filtering_by_a_tag_tells_nothing_to_a_caller_who_may_not_see_tags(gateway, gateway_as, locations):
    name = f"Bad payer {uuid.uuid4().hex[:6]}"
    assert gateway.post("/api/v1/tags", json={"name": name}).status_code == 201
    marked = new_customer(gateway, locations["home"], "Marked", "Oracle")
    assert gateway.post(f"/api/v1/customers/{marked['id']}/tags", json={"name": name}).status_code == 201
    reader = gateway_as(["customers.view"], [locations["home"]])
    listed = reader.get("/api/v1/customers", params={"tag": name})
    assert listed.status_code == 200, listed.text
    assert listed.json()["total"] == 0 and listed.json()["items"] == []
    tagger = gateway_as(["customers.view", "tags.view"], [locations["home"]])
    assert [c["id"] for c in tagger.get("/api/v1/customers", params={"tag": name}).json()["items"]] == [marked["id"]]


def test_the_summary_names_no_parent_to_a_caller_who_may_not_see_sale_information(gateway, gateway_as, locations):
    parent = new_customer(gateway, locations["home"], "Parent", "Oraclesen")
    sub = new_customer(gateway, locations["home"], "Sub", "Oraclesen", parent_customer_id=parent["id"])
    viewer = gateway_as(["customers.view"], [locations["home"]])
    assert "parent_customer_id" not in viewer.get(f"/api/v1/customers/{sub['id']}").json()
    summary = viewer.get(f"/api/v1/customers/{sub['id']}/summary")
    assert summary.status_code == 200, summary.text
    assert summary.json()["family"]["header"] is None and summary.json()["family"]["parent"] is None
    assert str(parent["id"]) not in str(summary.json()["family"])
    of_parent = viewer.get(f"/api/v1/customers/{parent['id']}/summary").json()["family"]
    assert of_parent["sub_customers"] == [] and of_parent["header"] is None
    seller = gateway_as(["customers.view", "customers.sale_info.view"], [locations["home"]])
    shown = seller.get(f"/api/v1/customers/{sub['id']}/summary").json()["family"]
    assert shown["parent"]["id"] == parent["id"] and shown["header"].startswith("Sub-customer of")


def test_an_ssn_one_cannot_see_is_rewritten_right_guess_or_wrong(gateway, gateway_as, locations):
    """Changing a saved SSN without seeing it: the right guess once changed nothing (the same ETag)."""
    blind = gateway_as(
        ["customers.view", "customers.modify", "customers.contact_info.modify", "confidential.ssn.modify"],
        [locations["home"]],
    )
    moved = []
    for guess in (SSN, "219-09-4418"):
        record = new_customer(gateway, locations["home"], "Guess", "Oracle", ssn=SSN)
        before = blind.get(f"/api/v1/customers/{record['id']}")
        assert before.json()["ssn"] == "***-**-4417"
        after = blind.patch(
            f"/api/v1/customers/{record['id']}", json={"ssn": guess}, headers={"If-Match": before.headers["ETag"]}
        )
        assert after.status_code == 200, after.text
        moved.append(after.headers["ETag"] != before.headers["ETag"])
    assert moved == [True, True]


def test_etags_are_versions_and_no_read_answers_304(gateway, gateway_as, locations):
    """An ETag is the record's version, the same for every reader, never a digest of what they see; a
    conditional GET is answered in full (no 304 to compare a guess against)."""
    record = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(locations["home"], last_name="Etag", primary_phone=unique_phone("613"), ssn=SSN),
    ).json()
    reader = gateway_as(["customers.view"], [locations["home"]])
    masked = reader.get(f"/api/v1/customers/{record['id']}")
    full = gateway.get(f"/api/v1/customers/{record['id']}")
    assert masked.json()["ssn"] != full.json()["ssn"]
    assert masked.headers["ETag"] == full.headers["ETag"]
    assert masked.headers["ETag"].startswith(f'"{record["id"]}.')
    again = reader.get(f"/api/v1/customers/{record['id']}", headers={"If-None-Match": masked.headers["ETag"]})
    assert again.status_code == 200 and again.json() == masked.json()


def test_an_operation_withholds_its_results_once_its_owner_lost_the_right_it_ran_under(stack, gateway, locations):
    """``GET /operations/{id}`` kept showing its owner every step's result (what archiving cancelled) after
    ``customers.archive`` was taken from them; the rights are checked again at each read."""
    record = new_customer(gateway, locations["home"], "Archived", f"Oracle{uuid.uuid4().hex[:6]}")
    permissions = ["customers.view", "customers.archive"]
    role = gateway.post("/api/v1/roles", json={"name": f"arc-{uuid.uuid4().hex[:8]}", "permissions": permissions})
    assert role.status_code == 201, role.text
    name, password = f"arc-{uuid.uuid4().hex[:8]}", secrets.token_urlsafe(16)
    grants = [{"role_id": role.json()["id"], "location_id": locations["home"]}]
    assert gateway.post("/api/v1/users", json={"username": name, "password": password, "grants": grants}).ok
    clerk = Gateway(stack.gateway_url, credentials={"username": name, "password": password})
    started = clerk.post(f"/api/v1/customers/{record['id']}/archive", json={"confirm": True})
    assert started.status_code == 202, started.text
    location = started.headers["Location"]

    def finished():
        body = clerk.get(location).json()
        return body if body["status"] in ("succeeded", "failed") else None

    done = clerk.wait_for(finished, timeout=60, what="the archive operation")
    assert [s["withheld"] for s in done["steps"]] == [False] * len(done["steps"])
    assert any(s["result"] for s in done["steps"])
    role_path = f"/api/v1/roles/{role.json()['id']}"
    narrowed = gateway.patch(
        role_path,
        json={"permissions": ["customers.view"]},
        headers={"If-Match": gateway.get(role_path).headers["ETag"]},
    )
    assert narrowed.status_code == 200, narrowed.text
    after = clerk.get(location)
    assert after.status_code == 200, after.text
    assert (after.json()["status"], after.json()["progress"]) == (done["status"], done["progress"])
    assert all(s["withheld"] and s["result"] is None and s["error"] is None for s in after.json()["steps"])


def test_an_account_number_names_its_customer_only_to_who_may_see_properties(gateway, gateway_as, locations):
    """``q=<account number>`` told a caller without ``properties.view`` which customer holds it."""
    number = f"ORC-{uuid.uuid4().int % 10**9:09d}"
    holder = new_customer(gateway, locations["home"], "Holder", f"Oracle{uuid.uuid4().hex[:6]}")
    made = gateway.post(
        f"/api/v1/customers/{holder['id']}/properties", json={"address": "1 Oracle Rd", "account_number": number}
    )
    assert made.status_code == 201, made.text

    def found(caller, q):
        listed = caller.get("/api/v1/customers", params={"q": q})
        assert listed.status_code == 200, listed.text
        return [c["id"] for c in listed.json()["items"]], listed.json()["total"]

    gateway.wait_for(lambda: found(gateway, number)[0] == [holder["id"]], what="the account number in the replica")
    blind = gateway_as(["customers.view"], [locations["home"]])
    elsewhere = gateway_as(["customers.view", "properties.view"], [locations["other"]])
    for q in (number, number.replace("-", ""), number.split("-")[1]):
        assert found(blind, q) == ([], 0), q
    assert found(elsewhere, number) == ([], 0)
    assert found(blind, holder["last_name"])[0] == [holder["id"]], "the record itself is listed"
    seeing = gateway_as(["customers.view", "properties.view"], [locations["home"]])
    assert found(seeing, number) == ([holder["id"]], 1)
