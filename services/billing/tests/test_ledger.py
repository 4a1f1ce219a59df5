import io
from datetime import date, timedelta

import pytest
from pypdf import PdfReader

from vigil_billing.tasks import event_consumer, run_due
from vigil_shared.messaging.contracts import CustomerDeleted, new_event
from vigil_shared.testing import identity_with


def issue(api, customer_id, amount, **body):
    response = api.post(
        f"/api/v1/customers/{customer_id}/invoices",
        json={"lines": [{"description": "Line", "unit_price": amount, "tax_rate_bp": 0}], "issue": True} | body,
    )
    assert response.status_code == 201, response.json
    return response.json


def test_transactions_carry_a_running_balance(api, known):
    known(7)
    first = issue(api, 7, 1000)
    issue(api, 7, 500)
    api.post("/api/v1/customers/7/payments", json={"method": "cash", "amount": 1200})
    api.post(f"/api/v1/invoices/{issue(api, 7, 300)['id']}/void")
    page = api.get("/api/v1/customers/7/transactions").json
    assert page["total"] == 5
    newest_first = [(e["kind"], e["amount"], e["balance"]) for e in page["items"]]
    assert newest_first[-1] == ("invoice", 1000, 1000) and page["items"][-1]["id"] == first["id"]
    assert newest_first[0][2] == 300  # 1000 + 500 - 1200 + 300 - 300
    assert {e["kind"] for e in page["items"]} == {"invoice", "payment", "void"}
    second = api.get("/api/v1/customers/7/transactions", query_string={"per_page": 2, "page": 2}).json
    assert [e["balance"] for e in second["items"]] == [e[2] for e in newest_first[2:4]]


def test_a_parents_transactions_combine_its_subs(api, known):
    known(7)
    known(8, parent_id=7)
    known(9, parent_id=7)
    issue(api, 8, 400)
    issue(api, 9, 600)
    issue(api, 7, 100)
    entries = api.get("/api/v1/customers/7/transactions").json["items"]
    assert sorted(e["customer_id"] for e in entries) == [7, 8, 9]
    assert entries[0]["balance"] == 1100
    assert api.get("/api/v1/customers/8/transactions").json["total"] == 0  # AR lives on the parent


def test_statement_as_json_and_as_pdf(api, known):
    known(7)
    issue(api, 7, 12345)
    today = date.today()
    params = {"from": (today - timedelta(days=1)).isoformat(), "to": today.isoformat()}
    statement = api.get("/api/v1/customers/7/statements", query_string=params)
    assert statement.status_code == 200, statement.json
    body = statement.json
    assert (body["opening_balance"], body["closing_balance"], body["from"]) == (0, 12345, params["from"])
    pdf = api.get("/api/v1/customers/7/statements/pdf", query_string=params)
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.data)).pages)
    assert "Statement - customer 7" in text and "123.45" in text and "Closing balance" in text
    bad = api.get("/api/v1/customers/7/statements", query_string={"from": "2026-02-01", "to": "2026-01-01"})
    assert bad.status_code == 422


def test_ar_aging_by_bucket_and_location(api, known):
    known(7, location_id=1)
    known(8, location_id=2)
    today = date.today()
    issue(api, 7, 100, due_date=(today + timedelta(days=5)).isoformat())
    issue(api, 7, 200, due_date=(today - timedelta(days=10)).isoformat())
    issue(api, 7, 400, due_date=(today - timedelta(days=45)).isoformat())
    issue(api, 8, 800, due_date=(today - timedelta(days=120)).isoformat())
    everything = api.get("/api/v1/ar-aging").json
    assert everything["totals"] == {
        "current": 100,
        "days_1_30": 200,
        "days_31_60": 400,
        "days_61_90": 0,
        "days_over_90": 800,
        "total": 1500,
    }
    here = api.get("/api/v1/ar-aging", query_string={"location_id": 1}).json
    assert [i["customer_id"] for i in here["items"]] == [7]
    clerk = api.as_(identity_with("billing.view", locations=(2,)))
    assert [i["customer_id"] for i in clerk.get("/api/v1/ar-aging").json["items"]] == [8]
    assert api.get("/api/v1/customers/7/billing").json["past_due"] == 600


@pytest.mark.usefixtures("any_start")
def test_a_date_range_and_later_pages_keep_the_running_balance_of_all_history(api, known, runtime):
    known(7)
    api.post(
        "/api/v1/customers/7/recurring-invoices",
        json={"lines": [{"description": "Monthly", "unit_price": 1000, "tax_rate_bp": 0}], "start_date": "2026-01-10"},
    )
    assert run_due(runtime, date(2026, 6, 10)).invoices_issued == 6
    api.post("/api/v1/customers/7/payments", json={"method": "cash", "amount": 2500})
    everything = api.get("/api/v1/customers/7/transactions", query_string={"per_page": 50}).json["items"]
    assert [e["balance"] for e in everything] == [3500, 6000, 5000, 4000, 3000, 2000, 1000]
    assert everything[-1]["date"] == "2026-01-10"
    spring = api.get(
        "/api/v1/customers/7/transactions",
        query_string={"from": "2026-02-01", "to": "2026-05-31", "per_page": 2, "page": 2},
    ).json
    assert spring["total"] == 4
    assert [(e["date"], e["balance"]) for e in spring["items"]] == [("2026-03-10", 3000), ("2026-02-10", 2000)]
    statement = api.get("/api/v1/customers/7/statements", query_string={"from": "2026-03-01", "to": "2026-04-30"}).json
    assert (statement["opening_balance"], statement["closing_balance"]) == (2000, 4000)
    assert api.get("/api/v1/customers/7/transactions", query_string={"page": 9}).json["total"] == 7


def test_deleting_a_sub_customer_takes_its_entries_off_the_parents_ledger(api, known, runtime):
    known(7)
    known(8, parent_id=7)
    issue(api, 8, 400)
    issue(api, 7, 100)
    assert api.get("/api/v1/customers/7/transactions").json["items"][0]["balance"] == 500
    consumer = event_consumer(runtime)
    consumer.consume(new_event(CustomerDeleted(customer_id=8), source="customer").to_message())
    page = api.get("/api/v1/customers/7/transactions").json
    assert (page["total"], page["items"][0]["balance"], page["items"][0]["customer_id"]) == (1, 100, 7)
