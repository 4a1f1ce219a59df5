"""Billing end to end, through the gateway only: the customer replica and accounts, company settings,
the MMR rate catalog and rate assignment with its mismatch rule, invoices, payments through the
sandbox processor, recurring invoices, the ledger, and parent/sub-customer billing (seed 001)."""

from __future__ import annotations

import io
import os
import signal
from datetime import UTC, datetime, timedelta

import conftest
import pytest
import requests
from conftest import assert_hidden, assert_problem, restart, unknown_path
from pypdf import PdfReader


def new_customer(gateway, location_id: int, last_name: str = "Payer", **fields) -> dict:
    return conftest.new_customer(gateway, location_id, "Bill", last_name, **fields)


@pytest.fixture(scope="module")
def payer(gateway, locations) -> dict:
    return new_customer(gateway, locations["home"])


# --- accounts and the customer replica ------------------------------------------------------------


def test_a_new_customer_has_an_empty_account_in_its_location(gateway, gateway_as, locations, payer):
    account = gateway.get(f"/api/v1/customers/{payer['id']}/billing")
    assert account.status_code == 200, account.text
    body = account.json()
    assert (body["location_id"], body["balance"], body["past_due"]) == (locations["home"], 0, 0)
    assert isinstance(body["balance"], int) and body["currency"] == "USD"
    assert gateway_as(["billing.view"], [locations["home"]]).get(f"/api/v1/customers/{payer['id']}/billing").ok
    elsewhere, account_path = (
        gateway_as(["billing.view"], [locations["other"]]),
        f"/api/v1/customers/{payer['id']}/billing",
    )
    assert_hidden(elsewhere.get(account_path), elsewhere.get(unknown_path(account_path, payer["id"])))
    assert_problem(
        gateway_as(["customers.view"], [locations["home"]]).get(f"/api/v1/customers/{payer['id']}/billing"), 403
    )


def test_a_customer_moving_location_moves_its_billing(gateway, gateway_as, locations):
    customer = new_customer(gateway, locations["home"], "Mover")
    assert gateway.get(f"/api/v1/customers/{customer['id']}/billing").ok
    assert gateway.patch(f"/api/v1/customers/{customer['id']}", json={"location_id": locations["other"]}).ok
    other_clerk = gateway_as(["billing.view"], [locations["other"]])
    gateway.wait_for(
        lambda: other_clerk.get(f"/api/v1/customers/{customer['id']}/billing").status_code == 200,
        what="customer.updated to move the billing account",
    )


def test_a_deleted_customer_has_no_billing(gateway, locations):
    customer = new_customer(gateway, locations["home"], "Leaving")
    assert gateway.get(f"/api/v1/customers/{customer['id']}/billing").ok
    assert gateway.delete(f"/api/v1/customers/{customer['id']}").status_code == 204
    gateway.wait_for(
        lambda: gateway.get(f"/api/v1/customers/{customer['id']}/billing").status_code == 404,
        what="customer.deleted to remove the billing account",
    )


def test_settings_are_company_wide_and_changed_by_catalog_managers(gateway, gateway_as, locations):
    settings = gateway.get("/api/v1/billing/settings")
    assert settings.status_code == 200 and settings.headers["ETag"]
    assert_problem(gateway_as(["billing.view"], [locations["home"]]).patch("/api/v1/billing/settings", json={}), 403)
    assert_problem(gateway.patch("/api/v1/billing/settings", json={"tax_rate_bp": "lots"}), 422)


# --- the MMR rate catalog and a customer's rate ---------------------------------------------------


def test_rate_assignment_with_the_mismatch_rule(gateway, gateway_as, locations):
    items = [{"key": "monitoring", "label": "Monitoring"}, {"key": "warranty", "label": "Warranty"}]
    assert gateway.patch("/api/v1/billing/settings", json={"mmr_breakout": True, "mmr_items": items}).ok
    rate = gateway.post(
        "/api/v1/rates",
        json={"name": "E2E Gold", "items": {"monitoring": 2999, "warranty": 500}},
        headers={"Idempotency-Key": "e2e-rate-gold"},
    )
    assert rate.status_code == 201, rate.text
    replay = gateway.post(
        "/api/v1/rates",
        json={"name": "E2E Gold", "items": {"monitoring": 2999, "warranty": 500}},
        headers={"Idempotency-Key": "e2e-rate-gold"},
    )
    assert replay.json()["id"] == rate.json()["id"] and replay.headers.get("Idempotent-Replayed") == "true"
    rate_id = rate.json()["id"]
    assert rate.json()["total"] == 3499
    picked = gateway.get("/api/v1/rates", params={"line": ["monitoring:2999"], "total_max": 3499}).json()
    assert rate_id in [r["id"] for r in picked["items"]]

    clerk = gateway_as(["billing.view", "billing.manage"], [locations["home"]])
    first, second = (
        new_customer(gateway, locations["home"], "First"),
        new_customer(gateway, locations["home"], "Second"),
    )
    read = clerk.get(f"/api/v1/customers/{first['id']}/rate")
    assert read.status_code == 200 and read.json()["rate"] is None
    assigned = clerk.request(
        "PUT",
        f"/api/v1/customers/{first['id']}/rate",
        json={"rate_id": rate_id, "contract_term_months": 36, "contract_start": "2026-01-01"},
        headers={"If-Match": read.headers["ETag"]},
    )
    assert assigned.status_code == 200, assigned.text
    assert assigned.json()["rate"]["id"] == rate_id and assigned.json()["contract_term_months"] == 36
    stale = clerk.request(
        "PUT",
        f"/api/v1/customers/{first['id']}/rate",
        json={"rate_id": rate_id},
        headers={"If-Match": read.headers["ETag"]},
    )
    assert_problem(stale, 412)

    # the company adds an MMR item: the rate's breakdown no longer matches
    more = [*items, {"key": "financing", "label": "Financing"}]
    assert gateway.patch("/api/v1/billing/settings", json={"mmr_items": more}).ok
    try:
        mine = clerk.get(f"/api/v1/customers/{first['id']}/rate").json()
        assert mine["rate"]["mismatched"] is True
        kept = clerk.request(
            "PUT", f"/api/v1/customers/{first['id']}/rate", json={"rate_id": rate_id, "a_la_carte": True}
        )
        assert kept.status_code == 200, kept.text
        refused = assert_problem(
            clerk.request("PUT", f"/api/v1/customers/{second['id']}/rate", json={"rate_id": rate_id}), 409
        )
        assert "rate_id" in refused["errors"]
        outsider = gateway_as(["billing.view", "billing.manage"], [locations["other"]])
        rate_path = f"/api/v1/customers/{first['id']}/rate"
        assert_hidden(
            outsider.put(rate_path, json={"rate_id": rate_id}),
            outsider.put(unknown_path(rate_path, first["id"]), json={"rate_id": rate_id}),
            422,  # a rate is set on a customer billing confirms: an unknown one is "No such customer"
        )
    finally:
        assert gateway.patch("/api/v1/billing/settings", json={"mmr_items": items}).ok


# --- invoices ------------------------------------------------------------------------------------------


def test_an_invoice_is_issued_numbered_and_voided(gateway, gateway_as, locations, payer):
    clerk = gateway_as(["billing.view", "billing.manage"], [locations["home"]])
    base = f"/api/v1/customers/{payer['id']}"
    draft = clerk.post(
        f"{base}/invoices",
        json={"lines": [{"description": "Monitoring", "unit_price": 2999, "tax_rate_bp": 825}]},
        headers={"Idempotency-Key": f"e2e-inv-{payer['id']}"},
    )
    assert draft.status_code == 201, draft.text
    assert draft.json()["total"] == 2999 + 247 and draft.json()["status"] == "draft"
    path = draft.headers["Location"]
    assert path.endswith(f"/api/v1/invoices/{draft.json()['id']}")
    invoice_path = f"/api/v1/invoices/{draft.json()['id']}"
    issued = clerk.post(f"{invoice_path}/issue", headers={"If-Match": draft.headers["ETag"]})
    assert issued.status_code == 200, issued.text
    assert issued.json()["number"] >= 1 and issued.json()["status"] == "issued"
    assert_problem(clerk.patch(invoice_path, json={"memo": "no"}), 409)
    account = clerk.get(f"{base}/billing").json()
    assert account["balance"] >= 3246 and account["open_invoices"] >= 1
    second = clerk.post(f"{base}/invoices", json={"lines": [{"description": "Fee", "unit_price": 100}], "issue": True})
    assert second.json()["number"] == issued.json()["number"] + 1
    voided = clerk.post(f"/api/v1/invoices/{second.json()['id']}/void", json={"reason": "Entered twice"})
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    elsewhere = gateway_as(["billing.view"], [locations["other"]])
    assert_hidden(elsewhere.get(invoice_path), elsewhere.get(unknown_path(invoice_path, draft.json()["id"])))
    gateway.wait_for(
        lambda: any(
            e["type"] == "invoice.voided" and e["request_id"] == voided.headers["X-Request-ID"]
            for e in gateway.get("/api/v1/ops/billing/outbox", params={"per_page": 100}).json()["items"]
        ),
        what="invoice.voided in the billing outbox",
    )


# --- billing methods through the sandbox processor ---------------------------------------------------


def tokenize(stack, number: str = "4242424242424242", **extra) -> str:
    """What a browser does: the card goes to the processor, Vigil only ever gets the token."""
    body = {"number": number, "exp_month": 12, "exp_year": 2099, "holder": "Bill Payer"} | extra
    response = requests.post(f"{stack.env['VIGIL_PROCESSOR_URL']}/v1/tokens", json=body, timeout=10)
    assert response.status_code == 201, response.text
    return response.json()["token"]


def test_a_card_tokenized_at_the_sandbox_becomes_a_billing_method(stack, gateway, gateway_as, locations, payer):
    manager = gateway_as(["billing.view", "billing_methods.manage"], [locations["home"]])
    base = f"/api/v1/customers/{payer['id']}/billing-methods"
    refused = manager.post(base, json={"token": "tok_x", "number": "4000000000000002", "cvc": "123"})
    assert_problem(refused, 422)
    assert "4000000000000002" not in refused.text
    created = manager.post(base, json={"token": tokenize(stack)}, headers={"Idempotency-Key": f"e2e-bm-{payer['id']}"})
    assert created.status_code == 201, created.text
    card = created.json()
    assert (card["brand"], card["last4"], card["exp_month"], card["holder"]) == ("visa", "4242", 12, "Bill Payer")
    assert "token" not in card
    assert manager.get(base).json()["total"] >= 1
    assert_problem(gateway_as(["billing.view"], [locations["home"]]).post(base, json={"token": "tok_abcd"}), 403)
    assert_problem(manager.post(base, json={"token": "tok_never_issued"}), 422)


# --- payments -----------------------------------------------------------------------------------------


def settled(gateway, payment_id: int) -> dict:
    return gateway.wait_for(
        lambda: (p := gateway.get(f"/api/v1/payments/{payment_id}").json())["status"] != "pending" and p,
        what="the billing worker to charge the payment",
    )


def test_invoice_charge_decline_and_refund_through_the_sandbox(stack, gateway, gateway_as, locations):
    customer = new_customer(gateway, locations["home"], "Charged")
    base = f"/api/v1/customers/{customer['id']}"
    cashier = gateway_as(["billing.view", "payments.create", "billing_methods.manage"], [locations["home"]])
    bill = gateway.post(
        f"{base}/invoices", json={"lines": [{"description": "Monitoring", "unit_price": 3000}], "issue": True}
    ).json()
    good = cashier.post(f"{base}/billing-methods", json={"token": tokenize(stack)}).json()
    poor = cashier.post(f"{base}/billing-methods", json={"token": tokenize(stack, "4000000000009995")}).json()

    declined = cashier.post(
        f"{base}/payments", json={"method": "card", "amount": bill["total"], "billing_method_id": poor["id"]}
    )
    assert declined.status_code == 202, declined.text
    failed = settled(gateway, declined.json()["id"])
    assert (failed["status"], failed["failure_code"]) == ("failed", "insufficient_funds")

    key = {"Idempotency-Key": f"e2e-charge-{customer['id']}"}
    body = {"method": "card", "amount": bill["total"] + 500, "billing_method_id": good["id"]}
    charge = cashier.post(f"{base}/payments", json=body, headers=key)
    replay = cashier.post(f"{base}/payments", json=body, headers=key)
    assert charge.status_code == 202 and replay.json()["id"] == charge.json()["id"]
    paid = settled(gateway, charge.json()["id"])
    assert paid["status"] == "succeeded" and paid["unallocated"] == 500
    assert gateway.get(f"/api/v1/invoices/{bill['id']}").json()["status"] == "paid"
    assert gateway.get(f"{base}/billing").json()["balance"] == -500

    refunded = cashier.post(f"/api/v1/payments/{paid['id']}/refund", json={"amount": 800})
    assert refunded.status_code == 200, refunded.text
    assert refunded.json()["amount_refunded"] == 800
    assert gateway.get(f"/api/v1/invoices/{bill['id']}").json()["status"] == "partially_paid"
    assert len(gateway.get(f"{base}/payments").json()["items"]) == 2
    assert_problem(
        gateway_as(["billing.view", "billing.manage"], [locations["home"]]).post(
            f"{base}/payments", json={"method": "cash", "amount": 1}
        ),
        403,
    )
    outbox = gateway.get("/api/v1/ops/billing/outbox", params={"per_page": 100}).json()["items"]
    assert not [e for e in outbox if "4000000000009995" in str(e) or "4242424242424242" in str(e)]


# --- recurring invoices: once per period, even through a kill -9 of the worker -------------------------


def recurring_invoices_of(gateway, customer_id: int) -> list[dict]:
    items = gateway.get(f"/api/v1/customers/{customer_id}/invoices", params={"per_page": 100}).json()["items"]
    return [i for i in items if i["recurring_invoice_id"] is not None]


def test_the_due_job_run_twice_for_a_day_issues_one_invoice(gateway, locations):
    customer = new_customer(gateway, locations["home"], "Monthly")
    start = (datetime.now(UTC).date() - timedelta(days=60)).replace(day=1)  # the first of a past month
    run_day, next_period = (start + timedelta(days=14)).isoformat(), (start + timedelta(days=32)).replace(day=1)
    made = gateway.post(
        f"/api/v1/customers/{customer['id']}/recurring-invoices",
        json={"lines": [{"description": "Monitoring", "unit_price": 2999}], "start_date": start.isoformat()},
    )
    assert made.status_code == 201, made.text
    for _ in range(2):
        assert gateway.post("/api/v1/billing/run-due", json={"date": run_day}).status_code == 202
    gateway.wait_for(lambda: recurring_invoices_of(gateway, customer["id"]), what="the due job to issue the period")
    gateway.post("/api/v1/billing/run-due", json={"date": run_day})
    gateway.wait_for(
        lambda: (
            gateway.get(f"/api/v1/customers/{customer['id']}/recurring-invoices").json()["items"][0]["next_date"]
            == next_period.isoformat()
        ),
        what="the template to move to its next period",
    )
    assert len(recurring_invoices_of(gateway, customer["id"])) == 1


def test_a_kill_9_of_the_billing_worker_mid_run_leaves_no_double_invoice(stack, gateway, locations):
    customers = [new_customer(gateway, locations["home"], f"Killed{n}") for n in range(12)]
    # 360 days ago (within the 12 months a template may start back) to yesterday: exactly 12 monthly periods
    today = datetime.now(UTC).date()
    start, run_day = (today - timedelta(days=360)).isoformat(), (today - timedelta(days=1)).isoformat()
    for customer in customers:
        response = gateway.post(
            f"/api/v1/customers/{customer['id']}/recurring-invoices",
            json={"lines": [{"description": "Monitoring", "unit_price": 1000}], "start_date": start},
        )
        assert response.status_code == 201, response.text
    assert gateway.post("/api/v1/billing/run-due", json={"date": run_day}).status_code == 202
    [worker] = [p for p in stack.processes if p.name == "billing-worker"]
    gateway.wait_for(lambda: recurring_invoices_of(gateway, customers[0]["id"]), what="the run to start", interval=0.02)
    os.killpg(worker.popen.pid, signal.SIGKILL)
    worker.popen.wait(20)
    restart(stack, worker, wait_ready=False)
    assert gateway.post("/api/v1/billing/run-due", json={"date": run_day}).status_code == 202
    for customer in customers:
        gateway.wait_for(
            lambda c=customer: len(recurring_invoices_of(gateway, c["id"])) >= 12,
            timeout=120,
            what="every period issued after the restart",
        )
    for customer in customers:
        periods = recurring_invoices_of(gateway, customer["id"])
        assert len(periods) == 12, [(i["number"], i["issue_date"]) for i in periods]
        assert len({i["issue_date"] for i in periods}) == 12


# --- parent and sub-customer billing (seed 001: "Linking a sub-customer to a parent customer") ---------


def test_a_sub_customer_bills_through_its_parent_and_unlinking_changes_nothing_billed(gateway, locations):
    parent = new_customer(gateway, locations["home"], "Parent")
    sub = new_customer(gateway, locations["home"], "Sub", parent_customer_id=parent["id"])
    today = datetime.now(UTC).date().isoformat()
    template = gateway.post(
        f"/api/v1/customers/{sub['id']}/recurring-invoices",
        json={"lines": [{"description": "Monitoring", "unit_price": 1999}], "start_date": today},
    )
    assert template.status_code == 201, template.text
    assert template.json()["bill_to_customer_id"] == parent["id"]  # flagged to bill through the parent
    assert gateway.post("/api/v1/billing/run-due", json={"date": today}).status_code == 202
    [invoice] = gateway.wait_for(
        lambda: recurring_invoices_of(gateway, sub["id"]), what="the due job to issue the sub's period"
    )
    assert invoice["bill_to_customer_id"] == parent["id"] and invoice["total"] == 1999

    def parent_entries():
        items = gateway.get(f"/api/v1/customers/{parent['id']}/transactions", params={"per_page": 100}).json()
        return [(e["kind"], e["id"], e["customer_id"]) for e in items["items"]]

    assert ("invoice", invoice["id"], sub["id"]) in parent_entries()  # the parent's combined transactions
    assert gateway.get(f"/api/v1/customers/{parent['id']}/billing").json()["balance"] == 1999  # AR on the parent

    refused = assert_problem(
        gateway.post(f"/api/v1/customers/{sub['id']}/payments", json={"method": "cash", "amount": 1999}), 409
    )
    assert refused["parent_customer_id"] == parent["id"]
    assert refused["parent_payments"] == f"/api/v1/customers/{parent['id']}/payments"
    paid = gateway.post(refused["parent_payments"], json={"method": "check", "amount": 1999, "check_number": "501"})
    assert paid.status_code == 201, paid.text
    assert gateway.get(f"/api/v1/invoices/{invoice['id']}").json()["status"] == "paid"

    # unlinking: new setups bill the former sub itself; nothing already set up or billed moves
    assert gateway.patch(f"/api/v1/customers/{sub['id']}", json={"parent_customer_id": None}).status_code == 200
    gateway.wait_for(
        lambda: gateway.get(f"/api/v1/customers/{sub['id']}/billing").json()["parent_id"] is None,
        what="customer.updated to unlink the sub in billing",
    )
    [kept] = gateway.get(f"/api/v1/customers/{sub['id']}/recurring-invoices").json()["items"]
    assert kept["id"] == template.json()["id"] and kept["bill_to_customer_id"] == parent["id"]
    assert gateway.get(f"/api/v1/invoices/{invoice['id']}").json()["bill_to_customer_id"] == parent["id"]
    assert ("invoice", invoice["id"], sub["id"]) in parent_entries()
    own = gateway.post(
        f"/api/v1/customers/{sub['id']}/recurring-invoices",
        json={"lines": [{"description": "Monitoring", "unit_price": 1999}], "start_date": "2099-01-01"},
    )
    assert own.status_code == 201 and own.json()["bill_to_customer_id"] == sub["id"]
    cash = gateway.post(f"/api/v1/customers/{sub['id']}/payments", json={"method": "cash", "amount": 100})
    assert cash.status_code == 201, cash.text


# --- ledger, statements, AR aging, the summary's billing box ---------------------------------------------


def test_ledger_statement_pdf_aging_and_summary_box(gateway, gateway_as, locations):
    customer = new_customer(gateway, locations["home"], "Ledger")
    base = f"/api/v1/customers/{customer['id']}"
    gateway.post(
        f"{base}/invoices",
        json={
            "lines": [{"description": "Old", "unit_price": 10000, "tax_rate_bp": 0}],
            "due_date": "2026-01-01",
            "issue": True,
        },
    )
    gateway.post(f"{base}/payments", json={"method": "check", "amount": 2500, "check_number": "77"})
    entries = gateway.get(f"{base}/transactions").json()["items"]
    assert [(e["kind"], e["balance"]) for e in entries] == [("payment", 7500), ("invoice", 10000)]
    period = {"from": "2020-01-01", "to": "2099-12-31"}
    statement = gateway.get(f"{base}/statements", params=period).json()
    assert (statement["opening_balance"], statement["closing_balance"]) == (0, 7500)
    pdf = gateway.get(f"{base}/statements/pdf", params=period)
    assert pdf.status_code == 200 and pdf.headers["Content-Type"] == "application/pdf"
    text = "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "Closing balance: 75.00" in text
    aging = gateway_as(["billing.view"], [locations["home"]]).get("/api/v1/ar-aging", params={"per_page": 100}).json()
    mine = [i for i in aging["items"] if i["customer_id"] == customer["id"]]
    assert mine and mine[0]["total"] == 7500 and mine[0]["current"] == 0
    assert [
        i
        for i in gateway_as(["billing.view"], [locations["other"]]).get("/api/v1/ar-aging").json()["items"]
        if i["customer_id"] == customer["id"]
    ] == []
    summary = gateway.get(f"{base}/summary").json()
    box = next(b for b in summary["status_boxes"] if b["category"] == "billing")
    assert (box["status"], box["balance"], box["past_due"]) == ("past_due", 7500, 7500)
    assert summary["counts"]["accounting"] == 1


@pytest.mark.run_last(1)
def test_no_card_number_in_any_log_or_file(stack):
    """The test cards went to the sandbox only: no Vigil log, database file or message holds one."""
    needles = [b"4242424242424242", b"4000000000000002", b"4242 4242 4242 4242"]
    found = []
    for path in stack.var_dir.rglob("*"):
        if path.is_file() and "sandbox-processor" not in path.name:
            data = path.read_bytes()
            found += [f"{path.name}: {n.decode()}" for n in needles if n in data]
    assert found == []
