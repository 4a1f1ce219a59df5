from datetime import date, timedelta

from vigil_billing.models import Invoice, InvoiceLine
from vigil_shared.testing import UNKNOWN_ID, assert_hidden, identity_with, unknown_path

LINES = [
    {"description": "Monitoring, December", "unit_price": 2999, "tax_rate_bp": 825},
    {"description": "Keypad", "quantity": 2, "unit_price": 4550, "tax_rate_bp": 825},
]


def new_invoice(api, customer_id=7, **body):
    response = api.post(f"/api/v1/customers/{customer_id}/invoices", json={"lines": LINES} | body)
    assert response.status_code == 201, response.json
    return response


def test_a_draft_adds_up_with_tax_rounded_per_line(api, known):
    known(7)
    created = new_invoice(api)
    invoice = created.json
    assert created.headers["Location"].endswith(f"/api/v1/invoices/{invoice['id']}")
    assert invoice["status"] == "draft" and invoice["number"] is None
    # 29.99 × 8.25 % = 2.474… → 2.47; 91.00 × 8.25 % = 7.5075 → 7.51
    assert [(line["amount"], line["tax"]) for line in invoice["lines"]] == [(2999, 247), (9100, 751)]
    assert (invoice["subtotal"], invoice["tax_total"], invoice["total"]) == (12099, 998, 13097)
    assert invoice["balance"] == 13097 and invoice["currency"] == "USD" and invoice["location_id"] == 1


def test_the_company_default_tax_rate_applies_when_a_line_names_none(api, known):
    known(7)
    api.patch("/api/v1/billing/settings", json={"tax_rate_bp": 1000})
    invoice = new_invoice(api, lines=[{"description": "Service call", "unit_price": 1005}]).json
    assert invoice["lines"][0]["tax"] == 101  # 100.5 → 101, half away from zero


def test_issuing_numbers_invoices_sequentially_and_freezes_them(api, known, outbox):
    known(7)
    first = new_invoice(api).json
    second = new_invoice(api).json
    issued_second = api.post(f"/api/v1/invoices/{second['id']}/issue")
    issued_first = api.post(f"/api/v1/invoices/{first['id']}/issue")
    assert (issued_second.json["number"], issued_first.json["number"]) == (1, 2)
    today = date.today()
    assert issued_first.json["issue_date"] == today.isoformat()
    assert issued_first.json["due_date"] == (today + timedelta(days=30)).isoformat()
    assert issued_first.json["status"] == "issued"
    path = f"/api/v1/invoices/{first['id']}"
    assert api.patch(path, json={"memo": "changed"}).status_code == 409
    assert api.delete(path).status_code == 409
    assert api.post(f"{path}/issue").status_code == 409
    events = outbox("invoice.issued")
    assert [data["number"] for _, data in events] == [1, 2]
    assert events[1][1]["total"] == 13097 and events[1][1]["currency"] == "USD"
    account = api.get("/api/v1/customers/7/billing").json
    assert (account["balance"], account["past_due"], account["open_invoices"]) == (2 * 13097, 0, 2)


def test_voiding_keeps_the_number_and_announces_it(api, known, outbox):
    known(7)
    invoice = new_invoice(api, issue=True).json
    path = f"/api/v1/invoices/{invoice['id']}"
    voided = api.post(f"{path}/void", json={"reason": "Wrong amount"})
    assert voided.status_code == 200 and voided.json["status"] == "void" and voided.json["balance"] == 0
    assert voided.json["number"] == invoice["number"]
    assert api.post(f"{path}/void", json={}).status_code == 409
    assert outbox("invoice.voided")[0][1] == {
        "invoice_id": invoice["id"],
        "customer_id": 7,
        "number": invoice["number"],
        "reason": "Wrong amount",
    }
    assert new_invoice(api, issue=True).json["number"] == invoice["number"] + 1
    assert api.get("/api/v1/customers/7/billing").json["open_invoices"] == 1


def test_drafts_change_with_if_match_and_are_deleted(api, known, session):
    known(7)
    created = new_invoice(api)
    path = f"/api/v1/invoices/{created.json['id']}"
    changed = api.patch(
        path,
        json={"lines": [{"description": "Only line", "unit_price": 100}], "due_date": "2030-01-31"},
        headers={"If-Match": created.headers["ETag"]},
    )
    assert changed.status_code == 200 and changed.json["total"] == 100 and len(changed.json["lines"]) == 1
    assert api.patch(path, json={"memo": "x"}, headers={"If-Match": created.headers["ETag"]}).status_code == 412
    assert api.delete(path, headers={"If-Match": created.headers["ETag"]}).status_code == 412
    assert api.delete(path).status_code == 204
    assert session.query(InvoiceLine).count() == 0


def test_bad_invoices_are_refused_whole(api, known, session):
    known(7)
    for bad in (
        {"lines": []},
        {"lines": [{"description": "x", "unit_price": 12.5}]},
        {"lines": [{"description": "x", "unit_price": "12"}]},
        {"lines": [{"description": "x", "unit_price": -1}]},
        {"lines": [{"description": "", "unit_price": 1}]},
        {"lines": [{"description": "x\x00", "unit_price": 1}]},
        {"lines": [{"description": "x", "unit_price": 10**12, "quantity": 10}]},
        {"lines": [{"description": "x", "unit_price": 1, "tax_rate_bp": 10001}]},
        {"lines": [{"description": "x", "unit_price": 1}], "number": 5},
        {"lines": [{"description": "x", "unit_price": 1}], "status": "paid"},
    ):
        assert api.post("/api/v1/customers/7/invoices", json=bad).status_code == 422, bad
    assert session.query(Invoice).count() == 0


def test_invoices_are_scoped_to_the_customers_location(api, known):
    known(7, location_id=1)
    invoice = new_invoice(api).json
    outsider = api.as_(identity_with("billing.view", "billing.manage", locations=(2,)))
    path = f"/api/v1/invoices/{invoice['id']}"
    unknown = unknown_path(path, invoice["id"])
    assert_hidden(outsider.get(path), outsider.get(unknown))
    assert_hidden(outsider.post(f"{path}/issue"), outsider.post(f"{unknown}/issue"))
    assert_hidden(
        outsider.get("/api/v1/customers/7/invoices"), outsider.get(f"/api/v1/customers/{UNKNOWN_ID}/invoices")
    )
    viewer = api.as_(identity_with("billing.view", locations=(1,)))
    assert viewer.get(f"/api/v1/invoices/{invoice['id']}").status_code == 200
    assert viewer.post(f"/api/v1/invoices/{invoice['id']}/issue").status_code == 403
    assert viewer.get("/api/v1/customers/7/invoices").json["total"] == 1
    assert api.get("/api/v1/invoices/999999").status_code == 404
    assert api.post("/api/v1/customers/99/invoices", json={"lines": LINES}).status_code == 422


def test_a_sub_customers_invoice_is_owed_by_its_parent(api, known):
    known(7)
    known(8, parent_id=7)
    invoice = new_invoice(api, customer_id=8, issue=True).json
    assert invoice["bill_to_customer_id"] == 7
    assert api.get("/api/v1/customers/7/billing").json["balance"] == invoice["total"]
    assert api.get("/api/v1/customers/8/billing").json["balance"] == 0


def test_idempotent_create(api, known, session):
    known(7)
    headers = {"Idempotency-Key": "inv-1"}
    first = api.post("/api/v1/customers/7/invoices", json={"lines": LINES}, headers=headers)
    again = api.post("/api/v1/customers/7/invoices", json={"lines": LINES}, headers=headers)
    assert first.json["id"] == again.json["id"] and session.query(Invoice).count() == 1
    other = api.post("/api/v1/customers/7/invoices", json={"lines": LINES[:1]}, headers=headers)
    assert other.status_code == 422


def test_deleting_the_customer_removes_its_invoices(api, known, runtime, session):
    from vigil_billing.tasks import event_consumer
    from vigil_shared.messaging.contracts import CustomerDeleted, new_event

    known(7)
    new_invoice(api, issue=True)
    new_invoice(api)
    event_consumer(runtime).consume(new_event(CustomerDeleted(customer_id=7), source="customer").to_message())
    session.expire_all()
    assert session.query(Invoice).count() == 0 and session.query(InvoiceLine).count() == 0
