"""Central stations' messages (forwarded by the gateway): status, signal log, unmatched, drift."""

import json

import pytest

from vigil_shared.identity import Identity, service_identity

STATION = service_identity("integration:Acme", permissions={"integrations.manage"})
ACME, ZETA = 5, 6  # the monitoring companies the stations Acme and Zeta belong to


def message(**fields) -> dict:
    return {
        "central_station": "Acme",
        "monitoring_company_id": ACME,
        "message_id": "m-1",
        "account_number": "S-1",
        "kind": "alarm",
    } | fields


@pytest.fixture
def known(known):
    """The plugin's ``known``, its customers monitored by Acme's company unless told otherwise."""

    def add(customer_id: int, location_id: int | None = 1, **facts):
        known(customer_id, location_id, **({"monitoring_company_id": ACME} | facts))

    return add


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
            "monitoring_company_id": ACME,
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
        json={
            "central_station": "Acme",
            "monitoring_company_id": ACME,
            "accounts": [{"account_number": "S-3", "address": "1 Guess Road"}],
        },
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


# --- a station reaches only the properties it monitors -------------------------------------------------


def zeta(**fields) -> dict:
    return message(**({"central_station": "Zeta", "monitoring_company_id": ZETA} | fields))


def test_another_stations_property_answers_like_an_unknown_account(api, site, known, outbox):
    """Zeta's messages for Acme's accounts (a property linked to Acme, or one monitored by Acme's company)
    are kept unmatched exactly like an account no property has: no signal, status or link reaches the
    property, and the receipt says nothing of the account existing elsewhere."""
    station = api.as_(STATION)
    assert station.post("/api/v1/monitoring/messages", json=message(kind="test")).status_code == 201  # links S-1
    known(8)  # monitored by Acme's company, not linked yet
    unlinked = api.post("/api/v1/customers/8/properties", json={"account_number": "S-2"}).json
    items = [
        zeta(kind="status", status="cancelled", message_id="z-1"),  # linked to Acme
        zeta(kind="status", status="cancelled", account_number="S-2", message_id="z-2"),  # Acme's company
        zeta(kind="status", status="cancelled", account_number="NOBODY", message_id="z-3"),  # no such account
    ]
    answer = station.post("/api/v1/monitoring/messages/batch", json={"items": items})
    assert answer.status_code == 200, answer.json
    assert answer.json["property_ids"] == [None, None, None]
    single = station.post("/api/v1/monitoring/messages", json=zeta(account_number="S-2", message_id="z-4"))
    unknown = station.post("/api/v1/monitoring/messages", json=zeta(account_number="NOBODY", message_id="z-5"))
    assert single.status_code == unknown.status_code == 201
    assert single.json["property_id"] is None and unknown.json["property_id"] is None
    assert set(single.json) == set(unknown.json)
    for prop in (site, unlinked):
        now = api.get(f"/api/v1/properties/{prop['id']}").json
        assert now["monitoring_status"] == "active"
        assert [s["central_station"] for s in api.get(f"/api/v1/properties/{prop['id']}/signals").json["items"]] in (
            [],
            ["Acme"],
        )
    assert api.get(f"/api/v1/properties/{site['id']}").json["central_station"] == "Acme"
    assert api.get(f"/api/v1/properties/{unlinked['id']}").json["central_station"] is None
    assert outbox("property.monitoring_changed") == []
    held = api.get("/api/v1/monitoring/unmatched").json["items"]
    assert sorted(s["message_id"] for s in held) == ["z-1", "z-2", "z-3", "z-4", "z-5"]


def test_the_first_message_links_only_a_property_its_company_monitors(api, known):
    """An unlinked property matches the station of its customer's Monitored By (and is linked then); a
    station bound to no company, or to another, matches only the properties already linked to it."""
    known(7, monitoring_company_id=ZETA)
    zetas = api.post("/api/v1/customers/7/properties", json={"account_number": "Z-1"}).json
    known(9, monitoring_company_id=None)
    unmonitored = api.post("/api/v1/customers/9/properties", json={"account_number": "U-1"}).json
    station = api.as_(STATION)
    acme = station.post("/api/v1/monitoring/messages", json=message(account_number="Z-1", message_id="a-1"))
    assert acme.json["property_id"] is None
    unbound = station.post(
        "/api/v1/monitoring/messages",
        json=zeta(account_number="Z-1", message_id="u-1", central_station="Zeta2", monitoring_company_id=None),
    )
    assert unbound.json["property_id"] is None
    assert station.post("/api/v1/monitoring/messages", json=zeta(account_number="U-1")).json["property_id"] is None
    first = station.post("/api/v1/monitoring/messages", json=zeta(account_number="Z-1", message_id="z-1"))
    assert first.json["property_id"] == zetas["id"]
    assert api.get(f"/api/v1/properties/{zetas['id']}").json["central_station"] == "Zeta"
    assert api.get(f"/api/v1/properties/{unmonitored['id']}").json["central_station"] is None
    # linked now: Zeta's messages match even if the integration is no longer bound to the company
    later = zeta(account_number="Z-1", message_id="z-2", monitoring_company_id=None)
    assert station.post("/api/v1/monitoring/messages", json=later).json["property_id"] == zetas["id"]


def test_drift_reports_another_stations_property_like_an_account_vigil_lacks(api, site, known):
    station = api.as_(STATION)
    station.post("/api/v1/monitoring/messages", json=message(kind="test"))  # S-1 is linked to Acme
    report = station.post(
        "/api/v1/monitoring/drift",
        json={
            "central_station": "Zeta",
            "monitoring_company_id": ZETA,
            "accounts": [{"account_number": "S-1", "status": "cancelled", "address": "1 Guess Road"}],
        },
    ).json
    assert report == {
        "missing_in_vigil": [{"account_number": "S-1"}],
        "missing_at_station": [],
        "status_mismatch": [],
        "address_mismatch": [],
    }


def test_monitored_by_reaches_the_replica_from_the_customer_events(api, runtime, session):
    """customer.created and customer.updated (when Monitored By changed) carry the company to the replica."""
    import uuid
    from datetime import UTC, datetime

    from vigil_property.models import KnownCustomer
    from vigil_property.tasks import event_consumer

    def consume(event_type, data):
        event_consumer(runtime).consume(
            {
                "id": str(uuid.uuid4()),
                "type": event_type,
                "version": 1,
                "source": "customer",
                "occurred_at": datetime.now(UTC).isoformat(),
                "data": data,
            }
        )

    consume("customer.created", {"customer_id": 41, "location_id": 1, "monitoring_company_id": ACME})
    session.expire_all()
    assert session.get(KnownCustomer, 41).monitoring_company_id == ACME
    consume("customer.updated", {"customer_id": 41, "changed": ["city"], "location_id": 1})
    session.expire_all()
    assert session.get(KnownCustomer, 41).monitoring_company_id == ACME  # not stated: kept
    consume(
        "customer.updated",
        {"customer_id": 41, "changed": ["monitoring_company_id"], "location_id": 1, "monitoring_company_id": ZETA},
    )
    session.expire_all()
    assert session.get(KnownCustomer, 41).monitoring_company_id == ZETA


def test_a_batch_of_signals_to_linked_properties_is_logged_outside_any_transaction(api, site, outbox, monkeypatch):
    """The common case (signals only, every matched property already linked to the station) is logged
    by :func:`monitoring.log_signals` in two autocommit statements; a first message to an unlinked
    property, or a status, goes through the transaction (link or status, history, events)."""
    from vigil_property import monitoring

    fast: list[list[int | None]] = []
    log_signals = monitoring.log_signals

    def counted(db, items):
        result = log_signals(db, items)
        fast.append(result)
        return result

    monkeypatch.setattr(monitoring, "log_signals", counted)
    station = api.as_(STATION)

    def batch(*items):
        answer = station.post("/api/v1/monitoring/messages/batch", json={"items": list(items)})
        assert answer.status_code == 200, answer.json
        return answer.json["property_ids"]

    assert batch(message(kind="test", message_id="f-1")) == [site["id"]]  # links S-1: the transaction
    assert fast == [None]
    linked = [data for _, data in outbox("property.updated") if "central_station" in data["changed"]]
    items = [
        message(kind="alarm", zone="2", message_id="f-2"),
        message(account_number="NOBODY-F", message_id="f-3"),
        zeta(kind="alarm", message_id="f-4"),  # another station: unmatched, like an unknown account
    ]
    assert batch(*items) == [site["id"], None, None]
    assert batch(*items) == [site["id"], None, None]  # sent again: logged once
    assert fast[1:] == [[site["id"], None, None]] * 2
    assert [data for _, data in outbox("property.updated") if "central_station" in data["changed"]] == linked
    log = api.get(f"/api/v1/properties/{site['id']}/signals").json["items"]
    assert sorted(s["message_id"] for s in log) == ["f-1", "f-2"]
    unmatched = api.get("/api/v1/monitoring/unmatched").json["items"]
    assert sorted(s["message_id"] for s in unmatched) == ["f-3", "f-4"]
    assert batch(message(kind="status", status="suspended", message_id="f-5")) == [site["id"]]
    assert fast[-1] is None and api.get(f"/api/v1/properties/{site['id']}").json["monitoring_status"] == "suspended"


def test_a_transfer_to_a_customer_another_company_monitors_unlinks_the_property(api, site, known, outbox):
    """The link Acme's first message made (Acme's company monitors customer 7) does not follow the property
    to a customer Zeta's company monitors: Acme's messages no longer reach it, Zeta's link it. A transfer
    between two customers of one company keeps the link."""
    station = api.as_(STATION)
    assert station.post("/api/v1/monitoring/messages", json=message(kind="test")).json["property_id"] == site["id"]
    known(8)  # Acme's company too
    known(9, monitoring_company_id=ZETA)
    path = f"/api/v1/properties/{site['id']}"
    kept = api.post(f"{path}/transfer", json={"to_customer_id": 8})
    assert kept.status_code == 200 and kept.json["central_station"] == "Acme", kept.json
    moved = api.post(f"{path}/transfer", json={"to_customer_id": 9})
    assert moved.status_code == 200 and moved.json["central_station"] is None, moved.json
    last = [data for _, data in outbox("property.updated") if "central_station" in data["changed"]][-1]
    assert (last["property_id"], last["customer_id"], last["central_station"]) == (site["id"], 9, None)
    history = api.get(f"{path}/history").json["items"]
    assert [(h["field"], h["old_value"], h["new_value"]) for h in history][:2] == [
        ("central_station", "Acme", None),
        ("customer_id", "8", "9"),
    ]
    status = message(kind="status", status="cancelled", message_id="m-9")
    assert station.post("/api/v1/monitoring/messages", json=status).json["property_id"] is None
    assert api.get(path).json["monitoring_status"] == "active"
    assert station.post("/api/v1/monitoring/messages", json=zeta(kind="test")).json["property_id"] == site["id"]
    assert api.get(path).json["central_station"] == "Zeta"
