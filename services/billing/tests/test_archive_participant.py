"""The billing service as a participant of the archive saga: cancel active recurring invoices and
scheduled payments stamped with the operation, report each customer's step, refuse writes, and
restore on request exactly what still makes sense. Each event applied twice changes nothing the
second time."""

import dataclasses
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select

from vigil_billing import archiving
from vigil_billing.archiving import next_period
from vigil_billing.models import RecurringInvoice, ScheduledPayment
from vigil_billing.tasks import event_consumer
from vigil_shared.messaging.contracts import CustomerArchiveRequested, CustomerUnarchiveRequested, new_event

OPERATION = "customer-" + "a" * 32
ARCHIVED = "urn:vigil:problem:customer-archived"
LINES = [{"description": "Monitoring", "unit_price": 2999, "tax_rate_bp": 0}]


@pytest.fixture
def consumer(runtime):
    return event_consumer(runtime)


def message(payload):
    return new_event(payload, source="customer").to_message()


def reports(outbox):
    return {report["target_id"]: report for _, report in outbox("operation.step_done")}


def test_the_next_period_resumes_on_or_after_today_on_the_template_s_anchor():
    template = RecurringInvoice(start_date=date(2026, 1, 31), interval_months=1)
    assert next_period(template, date(2026, 1, 1)) == date(2026, 1, 31)
    assert next_period(template, date(2026, 3, 1)) == date(2026, 3, 31)
    assert next_period(template, date(2026, 3, 31)) == date(2026, 3, 31)
    assert next_period(template, date(2026, 4, 1)) == date(2026, 4, 30)
    quarterly = RecurringInvoice(start_date=date(2025, 11, 15), interval_months=3)
    assert next_period(quarterly, date(2026, 5, 16)) == date(2026, 8, 15)
    assert next_period(quarterly, date(2026, 2, 15)) == date(2026, 2, 15)


def archived_at_the_customer_service(customer_service, archived, *customer_ids):
    """The customer service archives (or unarchives) first, then tells the participants."""
    for customer_id in customer_ids:
        facts = customer_service.customers[customer_id]
        customer_service.customers[customer_id] = dataclasses.replace(facts, archived=archived)


def test_archive_cancels_once_refuses_writes_and_unarchive_restores_what_still_makes_sense(
    api, session, consumer, known, customer_service, sandbox, outbox, monkeypatch
):
    known(7)
    known(8, parent_id=7)
    today = date.today()
    monthly = api.post(
        "/api/v1/customers/7/recurring-invoices", json={"lines": LINES, "start_date": today.isoformat()}
    ).json
    ending = api.post(
        "/api/v1/customers/8/recurring-invoices",
        json={"lines": LINES, "start_date": today.isoformat(), "end_date": (today + timedelta(days=5)).isoformat()},
    ).json
    stopped = api.post(
        "/api/v1/customers/7/recurring-invoices", json={"lines": LINES, "start_date": today.isoformat()}
    ).json
    assert api.post(f"/api/v1/recurring-invoices/{stopped['id']}/cancel").status_code == 200  # before archiving
    card = api.post("/api/v1/customers/7/billing-methods", json={"token": sandbox.tokenize()}).json

    def schedule(days):
        body = {"billing_method_id": card["id"], "amount": 500, "due_date": (today + timedelta(days=days)).isoformat()}
        created = api.post("/api/v1/customers/7/scheduled-payments", json=body)
        assert created.status_code == 201, created.json
        return created.json

    far, near = schedule(40), schedule(2)

    preview = api.get("/api/v1/archive-items/billing", query_string={"customer_id": [7, 8]}).json["items"]
    assert [(i["type"], i["id"], i["customer_id"]) for i in preview] == [
        ("recurring_invoice", monthly["id"], 7),
        ("recurring_invoice", ending["id"], 8),
        ("scheduled_payment", far["id"], 7),
        ("scheduled_payment", near["id"], 7),
    ]

    archived_at_the_customer_service(customer_service, True, 7, 8)
    archive = message(CustomerArchiveRequested(operation_id=OPERATION, customer_ids=[7, 8]))
    assert consumer.consume(archive) is True
    assert consumer.consume(archive) is False  # the inbox: once
    session.expire_all()
    for model, ids in ((RecurringInvoice, (monthly["id"], ending["id"])), (ScheduledPayment, (far["id"], near["id"]))):
        for record in session.scalars(select(model).where(model.id.in_(ids))):
            assert (record.status, record.cancelled_by_operation) == ("cancelled", OPERATION)
    assert session.get(RecurringInvoice, stopped["id"]).cancelled_by_operation is None
    steps = reports(outbox)
    assert {s["participant"] for s in steps.values()} == {"billing"} and set(steps) == {"7", "8"}
    assert [i["id"] for i in steps["7"]["result"]["cancelled"]] == [monthly["id"], far["id"], near["id"]]
    assert steps["7"]["result"]["cancelled"][0]["next_date"] == today.isoformat()  # what was called off
    assert api.get("/api/v1/archive-items/billing", query_string={"customer_id": [7, 8]}).json["items"] == []

    # archived = read-only here too; reads keep working
    writes = [
        api.post("/api/v1/customers/7/invoices", json={"lines": LINES}),
        api.post("/api/v1/customers/8/recurring-invoices", json={"lines": LINES, "start_date": "2030-01-01"}),
        api.post(f"/api/v1/recurring-invoices/{monthly['id']}/cancel"),
        api.post(f"/api/v1/scheduled-payments/{far['id']}/cancel"),
        api.post("/api/v1/customers/7/payments", json={"method": "cash", "amount": 100}),
        api.post("/api/v1/customers/7/billing-methods", json={"token": "tok_anything"}),
        api.post(f"/api/v1/billing-methods/{card['id']}/make-default"),
        api.request("PUT", "/api/v1/customers/7/rate", json={"rate_id": 1}),
    ]
    for response in writes:
        assert response.status_code == 409, response.json
        assert response.json["type"] == ARCHIVED and "/unarchive" in response.json["unarchive"]
    for path in ("billing", "recurring-invoices", "scheduled-payments", "invoices", "payments", "transactions"):
        assert api.get(f"/api/v1/customers/7/{path}").status_code == 200, path

    # unarchive three days later: the near payment's date has passed, the ending template has ended
    later = datetime.now(UTC) + timedelta(days=3)
    monkeypatch.setattr(archiving, "utcnow", lambda: later)
    archived_at_the_customer_service(customer_service, False, 7, 8)
    restore = CustomerUnarchiveRequested(
        operation_id="customer-" + "b" * 32,
        customer_ids=[7, 8],
        restore_cancelled=True,
        archive_operation_ids=[OPERATION],
    )
    assert consumer.consume(message(restore)) is True
    session.expire_all()
    steps = {target: s for target, s in reports(outbox).items() if "restored" in s["result"]}
    assert [i["id"] for i in steps["7"]["result"]["restored"]] == [monthly["id"], far["id"]]
    assert [(i["id"], i["reason"]) for i in steps["7"]["result"]["not_restored"]] == [
        (near["id"], "its date has passed")
    ]
    assert steps["8"]["result"]["restored"] == []
    assert [i["id"] for i in steps["8"]["result"]["not_restored"]] == [ending["id"]]
    resumed = session.get(RecurringInvoice, monthly["id"])
    assert resumed.status == "active" and resumed.next_date == next_period(resumed, later.date())
    assert resumed.next_date > today  # the period spent archived is not back-billed
    assert session.get(ScheduledPayment, far["id"]).status == "scheduled"
    assert session.get(ScheduledPayment, far["id"]).next_attempt_on == today + timedelta(days=40)
    for record_id, model in ((near["id"], ScheduledPayment), (ending["id"], RecurringInvoice)):
        assert (session.get(model, record_id).status, session.get(model, record_id).cancelled_by_operation) == (
            "cancelled",
            None,
        )
    assert session.get(RecurringInvoice, stopped["id"]).status == "cancelled"  # never archiving's to restore
    assert api.post("/api/v1/customers/7/payments", json={"method": "cash", "amount": 100}).status_code == 201


def test_unarchive_without_restore_leaves_the_cancelled_items_cancelled(
    api, session, consumer, known, customer_service, outbox
):
    known(7)
    made = api.post("/api/v1/customers/7/recurring-invoices", json={"lines": LINES, "start_date": "2030-01-01"}).json
    archived_at_the_customer_service(customer_service, True, 7)
    consumer.consume(message(CustomerArchiveRequested(operation_id=OPERATION, customer_ids=[7])))
    assert api.post("/api/v1/customers/7/invoices", json={"lines": LINES}).status_code == 409
    archived_at_the_customer_service(customer_service, False, 7)
    unarchive = CustomerUnarchiveRequested(
        operation_id="customer-" + "c" * 32, customer_ids=[7], archive_operation_ids=[OPERATION]
    )
    consumer.consume(message(unarchive))
    session.expire_all()
    assert session.get(RecurringInvoice, made["id"]).status == "cancelled"
    assert reports(outbox)["7"]["result"] == {"restored": []}  # the latest report: the unarchive's
    assert api.post("/api/v1/customers/7/invoices", json={"lines": LINES}).status_code == 201


def test_the_preview_needs_the_archive_permission_at_each_customer_s_location(api, known):
    from vigil_shared.testing import identity_with

    known(7, location_id=1)
    outsider = api.as_(identity_with("customers.archive", locations=(2,)))
    assert outsider.get("/api/v1/archive-items/billing", query_string={"customer_id": 7}).status_code == 403
    clerk = api.as_(identity_with("billing.view", locations=(1,)))
    assert clerk.get("/api/v1/archive-items/billing", query_string={"customer_id": 7}).status_code == 403
    assert api.get("/api/v1/archive-items/billing").json == {"items": []}
