import threading
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import func, select

from vigil_billing import recurring
from vigil_billing.models import Invoice, InvoiceLine, LedgerAccount, LedgerEntry, Payment, RecurringInvoice
from vigil_billing.recurring import add_months
from vigil_billing.tasks import run_due
from vigil_shared.messaging.outbox import Outbox
from vigil_shared.testing import assert_hidden, identity_with, unknown_path

LINES = [{"description": "Monitoring", "unit_price": 2999, "tax_rate_bp": 0}]
REAL_EARLIEST_START = recurring.earliest_start
pytestmark = pytest.mark.usefixtures("any_start")


def template(api, customer_id=7, **body):
    response = api.post(
        f"/api/v1/customers/{customer_id}/recurring-invoices", json={"lines": LINES, "start_date": "2026-01-31"} | body
    )
    assert response.status_code == 201, response.json
    return response.json


def invoices_of(session, template_id):
    session.expire_all()
    return session.scalars(
        select(Invoice).where(Invoice.recurring_invoice_id == template_id).order_by(Invoice.period_key)
    ).all()


def at_once(runs, action):
    """Runs ``action`` in ``runs`` threads started together; returns their results (none may fail)."""
    start, errors, results = threading.Barrier(runs), [], []

    def run():
        try:
            start.wait()
            results.append(action())
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(runs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    return results


def test_months_keep_the_anchor_day():
    assert add_months(date(2026, 1, 31), 1, 31) == date(2026, 2, 28)
    assert add_months(date(2026, 2, 28), 1, 31) == date(2026, 3, 31)
    assert add_months(date(2026, 11, 15), 3, 15) == date(2027, 2, 15)


def test_a_template_starts_at_most_twelve_months_ago(api, known, monkeypatch):
    """Every past period is invoiced at the next run: a mistyped year must not bill thousands."""
    monkeypatch.setattr(recurring, "earliest_start", REAL_EARLIEST_START)
    known(7)
    today = datetime.now(UTC).date()
    assert recurring.earliest_start(date(2026, 3, 31)) == date(2025, 3, 31)
    assert recurring.earliest_start(date(2024, 2, 29)) == date(2023, 2, 28)
    for too_early in ("0026-01-31", (today - timedelta(days=400)).isoformat()):
        refused = api.post("/api/v1/customers/7/recurring-invoices", json={"lines": LINES, "start_date": too_early})
        assert refused.status_code == 422 and "start_date" in refused.json["errors"], refused.json
    assert api.get("/api/v1/customers/7/recurring-invoices").json["total"] == 0
    template(api, start_date=(today - timedelta(days=360)).isoformat())


def test_a_period_is_invoiced_once_however_often_the_job_runs(api, known, runtime, session, outbox):
    known(7)
    made = template(api)
    assert run_due(runtime, date(2026, 3, 5)).invoices_issued == 2  # January 31 and February 28
    assert run_due(runtime, date(2026, 3, 5)).invoices_issued == 0
    assert run_due(runtime, date(2026, 3, 5)).invoices_issued == 0
    issued = invoices_of(session, made["id"])
    assert [i.issue_date for i in issued] == [date(2026, 1, 31), date(2026, 2, 28)]
    assert [i.status for i in issued] == ["issued", "issued"] and issued[0].number < issued[1].number
    assert len(outbox("invoice.issued")) == 2
    assert api.get("/api/v1/customers/7/recurring-invoices").json["items"][0]["next_date"] == "2026-03-31"


def test_concurrent_runs_issue_each_period_once(api, known, runtime, session):
    known(7)
    made = template(api, start_date="2026-01-01")
    at_once(4, lambda: run_due(runtime, date(2026, 6, 1)))
    keys = [i.period_key for i in invoices_of(session, made["id"])]
    assert len(keys) == len(set(keys)) == 6


def test_a_killed_run_leaves_no_double_invoice(api, known, runtime, session, monkeypatch, outbox):
    """The worker dies in the middle of a batch (its invoices written, not committed): nothing of the
    batch remains, no number is used up, and the rerun issues each period once."""
    known(7)
    made = template(api, start_date="2026-01-01")

    def die(*args, **kwargs):
        raise SystemExit("killed")

    monkeypatch.setattr(Outbox, "event_rows", die)  # after the invoices, lines and postings, before the commit
    with pytest.raises(SystemExit):
        run_due(runtime, date(2026, 3, 1))
    monkeypatch.undo()
    assert invoices_of(session, made["id"]) == []
    run_due(runtime, date(2026, 3, 1))
    run_due(runtime, date(2026, 3, 1))
    issued = invoices_of(session, made["id"])
    assert sorted(i.number for i in issued) == [1, 2, 3]
    assert len(outbox("invoice.issued")) == 3


def test_a_period_already_invoiced_is_skipped_and_the_template_moves_on(api, known, runtime, session):
    """A period whose key exists (its run died before moving the template on) is not issued again."""
    known(7)
    made = template(api, start_date="2026-01-01")
    session.add(
        Invoice(
            customer_id=7,
            bill_to_customer_id=7,
            status="issued",
            number=900,
            currency="USD",
            issue_date=date(2026, 1, 1),
            total=2999,
            amount_paid=0,
            recurring_invoice_id=made["id"],
            period_key=f"{made['id']}:2026-01-01",
        )
    )
    session.commit()
    assert run_due(runtime, date(2026, 2, 1)).invoices_issued == 1  # February only
    keys = [i.period_key for i in invoices_of(session, made["id"])]
    assert keys == [f"{made['id']}:2026-01-01", f"{made['id']}:2026-02-01"]
    assert api.get("/api/v1/customers/7/recurring-invoices").json["items"][0]["next_date"] == "2026-03-01"


def test_two_concurrent_batch_runs_issue_one_invoice_per_period(known, runtime, session, outbox):
    """Two runs over the same due set at once, in small batches: each period once, numbers a gapless
    sequence, one posting per invoice on the right account, one event each."""
    known(7)
    known(8, parent_id=7)
    for n in range(20):
        session.add(
            RecurringInvoice(
                customer_id=7 + n % 2,
                bill_to_customer_id=7,
                lines=[{"description": "Monitoring", "quantity": 1, "unit_price": 1000 + n, "tax_rate_bp": 825}],
                interval_months=1,
                start_date=date(2026, 1, 1),
                next_date=date(2026, 1, 1),
                status="active",
            )
        )
    session.commit()
    counts = at_once(
        2, lambda: recurring.run_due_invoices(runtime.db.transaction, runtime.outbox(), date(2026, 6, 1), 3)
    )
    session.expire_all()
    issued = session.scalars(select(Invoice)).all()
    assert sum(counts) == len(issued) == 120
    assert len({i.period_key for i in issued}) == 120
    assert sorted(i.number for i in issued) == list(range(1, 121))
    assert len(outbox("invoice.issued")) == 120
    assert {t.next_date for t in session.scalars(select(RecurringInvoice))} == {date(2026, 7, 1)}
    assert session.scalar(select(func.count()).select_from(LedgerEntry)) == 120
    account = session.get(LedgerAccount, 7)
    assert account is not None and (account.balance, account.entries) == (sum(i.total for i in issued), 120)
    assert {line.invoice_id for line in session.scalars(select(InvoiceLine))} == {i.id for i in issued}


def test_count_end_and_cancel(api, known, runtime, session):
    known(7)
    counted = template(api, start_date="2026-01-01", count=2)
    ended = template(api, start_date="2026-01-01", end_date="2026-02-15")
    stopped = template(api, start_date="2026-01-01")
    cancel = api.post(f"/api/v1/recurring-invoices/{stopped['id']}/cancel")
    assert cancel.status_code == 200 and cancel.json["status"] == "cancelled"
    assert api.post(f"/api/v1/recurring-invoices/{stopped['id']}/cancel").json["status"] == "cancelled"
    run_due(runtime, date(2026, 12, 1))
    assert len(invoices_of(session, counted["id"])) == 2
    assert len(invoices_of(session, ended["id"])) == 2
    assert invoices_of(session, stopped["id"]) == []
    active = api.get("/api/v1/customers/7/recurring-invoices", query_string={"active": "true"}).json
    assert active["total"] == 0


def test_a_sub_customers_new_recurring_invoice_bills_the_parent(api, known, runtime, session):
    known(7)
    known(8, parent_id=7)
    made = template(api, customer_id=8, start_date="2026-01-01")
    assert made["bill_to_customer_id"] == 7
    run_due(runtime, date(2026, 1, 1))
    [issued] = invoices_of(session, made["id"])
    assert (issued.customer_id, issued.bill_to_customer_id) == (8, 7)
    assert api.get("/api/v1/customers/7/billing").json["balance"] == 2999


def test_scheduled_payments_retry_soft_declines_then_fail(api, known, runtime, sandbox, session):
    known(7)
    poor = api.post("/api/v1/customers/7/billing-methods", json={"token": sandbox.tokenize("4000000000009995")}).json
    today = date.today()
    scheduled = api.post(
        "/api/v1/customers/7/scheduled-payments",
        json={"billing_method_id": poor["id"], "amount": 500, "due_date": today.isoformat()},
    )
    assert scheduled.status_code == 201, scheduled.json
    path = "/api/v1/customers/7/scheduled-payments"
    run_due(runtime, today)
    state = api.get(path).json["items"][0]
    assert (state["status"], state["attempts"], state["failure_code"]) == ("scheduled", 1, "insufficient_funds")
    run_due(runtime, today)  # not due again before its retry day
    assert api.get(path).json["items"][0]["attempts"] == 1
    for day in (date.fromordinal(today.toordinal() + n) for n in (1, 4, 9)):
        run_due(runtime, day)
    state = api.get(path).json["items"][0]
    assert (state["status"], state["attempts"]) == ("failed", 4)
    assert session.scalar(select(func.count()).select_from(Payment)) == 4  # one payment per attempt


def test_scheduled_payment_succeeds_once_and_cancel_is_idempotent(api, known, runtime, sandbox):
    known(7)
    good = api.post("/api/v1/customers/7/billing-methods", json={"token": sandbox.tokenize()}).json
    today = date.today()
    due = api.post(
        "/api/v1/customers/7/scheduled-payments",
        json={"billing_method_id": good["id"], "amount": 500, "due_date": today.isoformat()},
    ).json
    later = api.post(
        "/api/v1/customers/7/scheduled-payments",
        json={"billing_method_id": good["id"], "amount": 500, "due_date": "2099-01-01"},
    ).json
    run_due(runtime, today)
    run_due(runtime, today)
    items = {s["id"]: s for s in api.get("/api/v1/customers/7/scheduled-payments").json["items"]}
    assert items[due["id"]]["status"] == "succeeded"
    assert api.get("/api/v1/customers/7/payments").json["total"] == 1
    assert api.post(f"/api/v1/scheduled-payments/{due['id']}/cancel").status_code == 409
    for _ in range(2):
        assert api.post(f"/api/v1/scheduled-payments/{later['id']}/cancel").json["status"] == "cancelled"
    assert api.get("/api/v1/customers/7/scheduled-payments", query_string={"active": "true"}).json["total"] == 0
    bad = api.post(
        "/api/v1/customers/7/scheduled-payments",
        json={"billing_method_id": good["id"], "amount": 500, "due_date": "2001-01-01"},
    )
    assert bad.status_code == 422


def test_rights_on_recurring_and_scheduled(api, known):
    known(7, location_id=1)
    made = template(api)
    outsider = api.as_(identity_with("billing.view", "billing.manage", "payments.create", locations=(2,)))
    cancel = f"/api/v1/recurring-invoices/{made['id']}/cancel"
    assert_hidden(outsider.post(cancel), outsider.post(unknown_path(cancel, made["id"])))
    listed = "/api/v1/customers/7/recurring-invoices"
    assert_hidden(outsider.get(listed), outsider.get(unknown_path(listed, 7)))
    assert api.as_(identity_with("billing.manage", locations=(1,))).post("/api/v1/billing/run-due").status_code == 403
    assert RecurringInvoice  # imported for the model's table


def test_the_due_job_is_never_asked_for_a_day_still_ahead(api, monkeypatch):
    """``POST /billing/run-due`` needs ``ops.manage`` only. Asked for a later day, the worker charged every
    scheduled payment due by then and issued every recurring period up to it: an operator holding no
    billing right charged customers' cards years early. The due job runs for today or a day gone by."""
    from datetime import UTC, datetime, timedelta

    from vigil_billing import charging

    asked: list = []
    monkeypatch.setattr(charging, "request_run_due", asked.append)
    today = datetime.now(UTC).date()
    operator = api.as_(identity_with("ops.manage"))
    for ahead in (today + timedelta(days=1), date(2099, 1, 1)):
        refused = operator.post("/api/v1/billing/run-due", json={"date": ahead.isoformat()})
        assert refused.status_code == 422 and "date" in refused.json["errors"], refused.json
    assert asked == []
    for day in (today, today - timedelta(days=40)):
        assert operator.post("/api/v1/billing/run-due", json={"date": day.isoformat()}).status_code == 202
    assert operator.post("/api/v1/billing/run-due", json={}).status_code == 202
    assert asked == [today.isoformat(), (today - timedelta(days=40)).isoformat(), None]
