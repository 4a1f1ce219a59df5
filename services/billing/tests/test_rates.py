from datetime import date

import pytest

from vigil_billing.models import RateAssignment
from vigil_billing.rates import months_remaining
from vigil_shared.testing import UNKNOWN_ID, assert_hidden, identity_with

ITEMS = [{"key": "monitoring", "label": "Monitoring"}, {"key": "warranty", "label": "Warranty"}]


@pytest.fixture
def breakout(api):
    response = api.patch("/api/v1/billing/settings", json={"mmr_breakout": True, "mmr_items": ITEMS})
    assert response.status_code == 200, response.json


def new_rate(api, **body):
    response = api.post("/api/v1/rates", json=body)
    assert response.status_code == 201, response.json
    return response.json


def test_a_rate_adds_up_from_its_line_items(api, breakout):
    rate = new_rate(api, name="Gold", items={"monitoring": 2999, "warranty": 500})
    assert rate["total"] == 3499 and rate["currency"] == "USD" and rate["mismatched"] is False
    assert rate["items"] == [
        {"key": "monitoring", "label": "Monitoring", "amount": 2999},
        {"key": "warranty", "label": "Warranty", "amount": 500},
    ]
    assert api.get(f"/api/v1/rates/{rate['id']}").json["total"] == 3499
    for bad in (
        {"items": {"monitoring": 2999}},  # a configured item missing
        {"items": {"monitoring": 1, "warranty": 1, "financing": 1}},  # not configured
        {"items": {"monitoring": 2999, "warranty": 500}, "total": 1},  # does not add up
        {"items": {"monitoring": 29.99, "warranty": 5}},  # a float
        {"items": {"monitoring": "2999", "warranty": 5}},
        {"items": {"monitoring": -1, "warranty": 5}},
        {"items": {"Monitoring!": 1}},
        {"total": 1.5},
        {"total": 10**13},
        {"mismatched": False, "total": 1},
    ):
        assert api.post("/api/v1/rates", json=bad).status_code == 422, bad


def test_the_picker_filters_by_total_and_line_items(api, breakout):
    cheap = new_rate(api, name="Basic", items={"monitoring": 1999, "warranty": 0})
    gold = new_rate(api, name="Gold", items={"monitoring": 2999, "warranty": 500})
    plus = new_rate(api, name="Gold plus", items={"monitoring": 2999, "warranty": 1000})

    def ids(**params):
        response = api.get("/api/v1/rates", query_string=params)
        assert response.status_code == 200, response.json
        return [item["id"] for item in response.json["items"]]

    assert ids() == [cheap["id"], gold["id"], plus["id"]]
    assert ids(total=3499) == [gold["id"]]
    assert ids(total_min=2000, total_max=3500) == [gold["id"]]
    assert ids(line="monitoring:2999") == [gold["id"], plus["id"]]
    assert ids(line=["monitoring:2999", "warranty:1000"]) == [plus["id"]]
    assert ids(line="warranty") == [gold["id"], plus["id"]]
    assert ids(q="gold", per_page=1) == [gold["id"]]
    assert api.get("/api/v1/rates", query_string={"line": "monitoring:abc"}).status_code == 422


def test_a_mismatched_rate_stays_where_it_is_but_is_given_to_no_one_else(api, breakout, known):
    known(7)
    known(8)
    rate = new_rate(api, items={"monitoring": 2999, "warranty": 500})
    assigned = api.put("/api/v1/customers/7/rate", json={"rate_id": rate["id"], "contract_term_months": 36})
    assert assigned.status_code == 200, assigned.json
    api.patch("/api/v1/billing/settings", json={"mmr_items": [*ITEMS, {"key": "financing", "label": "Financing"}]})
    mine = api.get("/api/v1/customers/7/rate").json
    assert mine["rate"]["id"] == rate["id"] and mine["rate"]["mismatched"] is True
    again = api.put(
        "/api/v1/customers/7/rate",
        json={"rate_id": rate["id"], "contract_term_months": 24},
        headers={"If-Match": api.get("/api/v1/customers/7/rate").headers["ETag"]},
    )
    assert again.status_code == 200 and again.json["contract_term_months"] == 24
    refused = api.put("/api/v1/customers/8/rate", json={"rate_id": rate["id"]})
    assert refused.status_code == 409 and "rate_id" in refused.json["errors"]
    assert api.get("/api/v1/customers/8/rate").json["rate"] is None
    assert [r["id"] for r in api.get("/api/v1/rates", query_string={"assignable": "true"}).json["items"]] == []
    assert api.patch(f"/api/v1/rates/{rate['id']}", json={"items": {"monitoring": 1}}).status_code == 409


def test_assignment_needs_billing_manage_where_the_customer_is(api, known, session):
    known(7, location_id=1)
    rate = new_rate(api, total=2500)
    outsider = api.as_(identity_with("billing.view", "billing.manage", locations=(2,)))
    hidden = outsider.put("/api/v1/customers/7/rate", json={"rate_id": rate["id"]})
    assert_hidden(hidden, outsider.put(f"/api/v1/customers/{UNKNOWN_ID}/rate", json={"rate_id": rate["id"]}), 422)
    viewer = api.as_(identity_with("billing.view", locations=(1,)))
    assert viewer.put("/api/v1/customers/7/rate", json={"rate_id": rate["id"]}).status_code == 403
    clerk = api.as_(identity_with("billing.view", "billing.manage", locations=(1,)))
    first = clerk.get("/api/v1/customers/7/rate")
    assert (
        clerk.put(
            "/api/v1/customers/7/rate", json={"rate_id": rate["id"]}, headers={"If-Match": first.headers["ETag"]}
        ).status_code
        == 200
    )
    stale = clerk.put(
        "/api/v1/customers/7/rate", json={"rate_id": rate["id"]}, headers={"If-Match": first.headers["ETag"]}
    )
    assert stale.status_code == 412
    assert clerk.put("/api/v1/customers/7/rate", json={"rate_id": 999999}).status_code == 422
    assert clerk.put("/api/v1/customers/99/rate", json={"rate_id": rate["id"]}).status_code == 422
    assert clerk.delete("/api/v1/customers/7/rate").status_code == 204
    assert session.get(RateAssignment, 7) is None


def test_retired_rates_are_not_assignable(api, known):
    known(7)
    rate = new_rate(api, total=2500)
    assert api.patch(f"/api/v1/rates/{rate['id']}", json={"active": False}).json["active"] is False
    assert api.put("/api/v1/customers/7/rate", json={"rate_id": rate["id"]}).status_code == 422
    assert api.get("/api/v1/rates").json["total"] == 0
    assert api.get("/api/v1/rates", query_string={"active": "false"}).json["total"] == 1


def test_catalog_changes_need_catalogs_manage(api):
    clerk = api.as_(identity_with("billing.view", "billing.manage", locations=(1,)))
    assert clerk.post("/api/v1/rates", json={"total": 1}).status_code == 403
    assert clerk.get("/api/v1/rates").status_code == 200


def test_the_currency_is_fixed_once_amounts_exist(api):
    assert api.patch("/api/v1/billing/settings", json={"currency": "CAD"}).status_code == 200
    new_rate(api, total=100)
    assert api.patch("/api/v1/billing/settings", json={"currency": "EUR"}).status_code == 409
    assert api.get("/api/v1/rates").json["items"][0]["currency"] == "CAD"


def test_contract_months_remaining():
    assignment = RateAssignment(contract_term_months=36, contract_start=date(2026, 1, 15))
    assert months_remaining(assignment, date(2026, 1, 20)) == 36
    assert months_remaining(assignment, date(2026, 3, 14)) == 35
    assert months_remaining(assignment, date(2026, 3, 15)) == 34
    assert months_remaining(assignment, date(2035, 1, 1)) == 0
    assert months_remaining(RateAssignment(contract_term_months=None), date(2026, 1, 1)) is None


def test_deleting_the_customer_removes_its_rate(api, known, runtime, session):
    from vigil_billing.tasks import event_consumer
    from vigil_shared.messaging.contracts import CustomerDeleted, new_event

    known(7)
    rate = new_rate(api, total=2500)
    api.put("/api/v1/customers/7/rate", json={"rate_id": rate["id"]})
    event_consumer(runtime).consume(new_event(CustomerDeleted(customer_id=7), source="customer").to_message())
    session.expire_all()
    assert session.get(RateAssignment, 7) is None
