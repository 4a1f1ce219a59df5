"""Central stations' messages (forwarded by the gateway): status, signal log, unmatched, drift."""

import json

from vigil_shared.identity import Identity, service_identity

STATION = service_identity("integration:Acme", permissions={"integrations.manage"})


def message(**fields) -> dict:
    return {"central_station": "Acme", "message_id": "m-1", "account_number": "S-1", "kind": "alarm"} | fields


def test_a_status_changes_the_property_with_history_and_events(api, site, outbox):
    station = api.as_(STATION)
    answer = station.post("/api/v1/monitoring/messages", json=message(kind="status", status="suspended"))
    assert answer.status_code == 201, answer.json
    assert answer.json["property_id"] == site["id"]
    assert api.get(f"/api/v1/properties/{site['id']}").json["monitoring_status"] == "suspended"
    [(_, changed)] = outbox("property.monitoring_changed")
    assert changed["new_status"] == "suspended"
    history = api.get(f"/api/v1/properties/{site['id']}/history").json["items"]
    assert any(h["field"] == "monitoring_status" and h["source"] == "integration" for h in history)


def test_signals_are_logged_filterable_and_the_test_is_flagged_overdue(api, site):
    station = api.as_(STATION)
    assert api.get(f"/api/v1/properties/{site['id']}/signals").json["test_overdue"] is True
    station.post("/api/v1/monitoring/messages", json=message(kind="alarm", zone="4", user="2", account_number="s-1"))
    station.post("/api/v1/monitoring/messages", json=message(kind="test", message_id="m-2"))
    log = api.get(f"/api/v1/properties/{site['id']}/signals").json
    assert [s["kind"] for s in log["items"]] == ["test", "alarm"] and log["test_overdue"] is False
    assert api.get(f"/api/v1/properties/{site['id']}/signals?kind=alarm").json["items"][0]["zone"] == "4"


def test_unknown_accounts_are_kept_unmatched_until_resolved(api, site):
    station = api.as_(STATION)
    station.post("/api/v1/monitoring/messages", json=message(account_number="NOBODY"))
    [unmatched] = api.get("/api/v1/monitoring/unmatched").json["items"]
    assert unmatched["property_id"] is None
    resolved = api.post(f"/api/v1/monitoring/unmatched/{unmatched['id']}/resolve", json={"property_id": site["id"]})
    assert resolved.status_code == 200 and resolved.json["property_id"] == site["id"]
    assert api.get("/api/v1/monitoring/unmatched").json["items"] == []
    again = api.post(f"/api/v1/monitoring/unmatched/{unmatched['id']}/resolve", json={"property_id": site["id"]})
    assert again.status_code == 409


def test_only_a_service_may_post_messages_or_ask_for_drift(api, site):
    user = Identity(subject="9", username="op", kind="user", permissions=frozenset({"integrations.manage"}))
    assert api.as_(user).post("/api/v1/monitoring/messages", json=message()).status_code == 403
    body = {"central_station": "Acme", "accounts": []}
    assert api.as_(user).post("/api/v1/monitoring/drift", json=body).status_code == 403


def test_drift_finds_both_sides_and_mismatches(api, site, known):
    station = api.as_(STATION)
    station.post("/api/v1/monitoring/messages", json=message(kind="test"))  # S-1 is now linked to Acme
    known(8)
    api.post("/api/v1/customers/8/properties", json={"account_number": "S-2", "address": "2 Main St"})
    report = station.post(
        "/api/v1/monitoring/drift",
        json={
            "central_station": "Acme",
            "accounts": [
                {"account_number": "s-2", "status": "cancelled", "address": "2  main st"},
                {"account_number": "S-9", "status": "active"},
            ],
        },
    ).json
    assert report["missing_in_vigil"] == [{"account_number": "S-9"}]
    assert [p["account_number"] for p in report["missing_at_station"]] == ["S-1"]
    assert [(m["vigil"], m["station"]) for m in report["status_mismatch"]] == [("active", "cancelled")]
    assert report["address_mismatch"] == []


def test_a_batch_is_logged_once_in_order_and_can_be_sent_again(api, site):
    station = api.as_(STATION)
    items = [
        message(kind="alarm", zone="1", message_id="b-1"),
        message(account_number="NOBODY-B", message_id="b-2"),
        message(kind="status", status="suspended", message_id="b-3"),
    ]
    first = station.post("/api/v1/monitoring/messages/batch", json={"items": items})
    assert first.status_code == 200, first.json
    assert first.json["property_ids"] == [site["id"], None, site["id"]]
    again = station.post("/api/v1/monitoring/messages/batch", json={"items": items})  # the gateway re-sends it
    assert again.status_code == 200 and again.json["property_ids"] == first.json["property_ids"]
    log = api.get(f"/api/v1/properties/{site['id']}/signals").json
    assert sorted(s["message_id"] for s in log["items"]) == ["b-1", "b-3"]
    assert api.get(f"/api/v1/properties/{site['id']}").json["monitoring_status"] == "suspended"
    user = Identity(subject="9", username="op", kind="user", permissions=frozenset({"integrations.manage"}))
    assert api.as_(user).post("/api/v1/monitoring/messages/batch", json={"items": items}).status_code == 403


def test_drift_never_hands_vigils_address_to_whoever_wrote_the_station_list(api, site, known):
    """The report is read by integration managers, who need not see properties anywhere, and the list it
    compares is whatever the integration's accounts_url answers: guessing account numbers with made-up
    addresses must not read back the properties' real addresses."""
    known(8)
    api.post("/api/v1/customers/8/properties", json={"account_number": "S-3", "address": "3 Hidden Lane"})
    report = api.as_(STATION).post(
        "/api/v1/monitoring/drift",
        json={"central_station": "Acme", "accounts": [{"account_number": "S-3", "address": "1 Guess Road"}]},
    )
    assert report.status_code == 200, report.json
    [mismatch] = report.json["address_mismatch"]
    assert mismatch["account_number"] == "S-3" and mismatch["station"] == "1 Guess Road" and mismatch["property_id"]
    assert "3 Hidden Lane" not in json.dumps(report.json)


def test_the_first_message_links_the_property_to_its_station_until_an_edit_unlinks_it(api, site, outbox):
    station = api.as_(STATION)
    assert api.get(f"/api/v1/properties/{site['id']}").json["central_station"] is None
    station.post("/api/v1/monitoring/messages", json=message(kind="test"))
    station.post("/api/v1/monitoring/messages", json=message(kind="alarm", message_id="m-2"))
    assert api.get(f"/api/v1/properties/{site['id']}").json["central_station"] == "Acme"
    linked = [data for _, data in outbox("property.updated") if "central_station" in data["changed"]]
    assert [(d["property_id"], d["central_station"]) for d in linked] == [(site["id"], "Acme")]  # once
    assert api.patch(f"/api/v1/properties/{site['id']}", json={"central_station": "Other"}).status_code == 422
    unlinked = api.patch(f"/api/v1/properties/{site['id']}", json={"central_station": None})
    assert unlinked.status_code == 200 and unlinked.json["central_station"] is None
    last = [data for _, data in outbox("property.updated") if "central_station" in data["changed"]][-1]
    assert last["central_station"] is None
    history = api.get(f"/api/v1/properties/{site['id']}/history").json["items"]
    assert [h["new_value"] for h in history if h["field"] == "central_station"][:2] == [None, "Acme"]


def test_resolving_an_unmatched_signal_links_the_property(api, site):
    api.as_(STATION).post("/api/v1/monitoring/messages", json=message(account_number="NOBODY", central_station="Zeta"))
    [unmatched] = api.get("/api/v1/monitoring/unmatched").json["items"]
    api.post(f"/api/v1/monitoring/unmatched/{unmatched['id']}/resolve", json={"property_id": site["id"]})
    assert api.get(f"/api/v1/properties/{site['id']}").json["central_station"] == "Zeta"
