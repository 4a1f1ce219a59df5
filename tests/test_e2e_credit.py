"""Credit checks end to end: through the gateway, the credit worker and the sandbox bureau process.

The sandbox bureau answers by the last four digits of the subject's SSN (see
``vigil_sandbox_bureau.app``): ``0750`` a hit scoring 499, ``1000`` no hit, ``1001`` a frozen file,
``1002`` a slow hit. It counts inquiries by idempotency key, which is how these tests prove that a
worker killed mid-pull still makes exactly one hard inquiry.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
import uuid

import pytest
import requests
from conftest import assert_hidden, assert_problem, customer_body, unique_phone, unknown_path

from vigil_runner.stack import is_ready

FINISHED = {"complete", "no_hit", "frozen", "failed", "manual"}
# Waits are long: on RabbitMQ a freshly started prefork worker was seen (several times in this session)
# to hang on its first task, with no database session busy, until Celery's 120 s task time limit
# replaced the process and the message was delivered again (reported to the merger; not understood yet).


def ssn_ending(last4: str) -> str:
    return f"{random.randint(100, 665)}-{random.randint(10, 99)}-{last4}"


@pytest.fixture(scope="module")
def bureau(stack):
    """The sandbox bureau's own endpoints (inquiry counts, outage switch)."""
    base = stack.env["VIGIL_BUREAU_URL"]

    class Sandbox:
        def inquiries(self, key_prefix: str) -> list[dict]:
            return requests.get(f"{base}/sandbox/inquiries", params={"key_prefix": key_prefix}, timeout=5).json()[
                "inquiries"
            ]

        def control(self, **settings) -> None:
            assert requests.post(f"{base}/sandbox/control", json=settings, timeout=5).status_code == 200

    return Sandbox()


@pytest.fixture(scope="module")
def home(locations):
    return locations["home"]


def new_customer(gateway, location_id: int, last4: str = "0750") -> dict:
    body = customer_body(location_id, primary_phone=unique_phone(), ssn=ssn_ending(last4), birthdate="1975-04-12")
    response = gateway.post("/api/v1/customers?allow_duplicates=true", json=body)
    assert response.status_code == 201, response.text
    return response.json() | {"ssn_plain": body["ssn"]}


def run_credit(gateway, customer_id: int, **body) -> dict:
    response = gateway.post(f"/api/v1/customers/{customer_id}/credit-checks", json={"bureau": "equifax"} | body)
    assert response.status_code == 202, response.text
    assert response.json()["status"] == "pending"
    assert response.headers["Location"].endswith(f"/credit-checks/{response.json()['id']}")
    return response.json()


def finished(gateway, check_id: int, timeout: float = 180) -> dict:
    def done():
        check = gateway.get(f"/api/v1/credit-checks/{check_id}").json()
        return check if check["status"] in FINISHED else None

    return gateway.wait_for(done, timeout=timeout, what=f"credit check {check_id} to finish")


@pytest.mark.parametrize(
    ("last4", "status", "score", "grade"),
    [("0750", "complete", 499, "F"), ("1000", "no_hit", None, None), ("1001", "frozen", None, None)],
)
def test_a_pull_to_each_sandbox_outcome(gateway, home, last4, status, score, grade):
    customer = new_customer(gateway, home, last4)
    check = finished(gateway, run_credit(gateway, customer["id"])["id"])
    assert (check["status"], check["score"], check["grade"]) == (status, score, grade)
    assert check["transaction_id"] and check["run_at"] and check["bureau"] == "equifax"
    if status != "complete":
        assert check["reason"]
    listed = gateway.get(f"/api/v1/customers/{customer['id']}/credit-checks").json()
    assert [c["id"] for c in listed["items"]] == [check["id"]]


def test_apply_skip_run_again_and_the_repeat_refusal(gateway, home):
    customer = new_customer(gateway, home, "0702")  # score 300 + 702 % 551 = 451
    first = finished(gateway, run_credit(gateway, customer["id"])["id"])
    applied = gateway.post(f"/api/v1/credit-checks/{first['id']}/apply")
    assert applied.status_code == 200 and applied.json()["applied"] is True

    def scored():
        record = gateway.get(f"/api/v1/customers/{customer['id']}").json()
        return record if record.get("credit_score") == 451 else None

    record = gateway.wait_for(scored, timeout=300, what="the applied score on the customer")
    assert record["credit_tracking_number"] == first["transaction_id"]
    history = gateway.get(f"/api/v1/customers/{customer['id']}/history", params={"field": "credit_score"}).json()
    assert history["items"][0]["new_value"] == "451" and history["items"][0]["actor_name"] == "admin"

    again = gateway.post(f"/api/v1/customers/{customer['id']}/credit-checks", json={"bureau": "equifax"})
    assert assert_problem(again, 409)["errors"] == {"confirm_repeat": ["Confirm the repeat pull."]}
    second = finished(gateway, run_credit(gateway, customer["id"], confirm_repeat=True)["id"])
    skipped = gateway.post(f"/api/v1/credit-checks/{second['id']}/skip").json()
    assert skipped["skipped"] is True and skipped["applied"] is False
    tab = gateway.get(f"/api/v1/customers/{customer['id']}/credit-checks").json()["items"]
    assert [(c["id"], c["applied"]) for c in tab] == [(second["id"], False), (first["id"], True)]

    manual = gateway.post(f"/api/v1/customers/{customer['id']}/credit-checks/manual", json={"score": 705})
    assert manual.status_code == 201 and manual.json()["grade"] == "A"


def test_rights_per_location_through_the_gateway(gateway, gateway_as, locations):
    customer = new_customer(gateway, locations["home"])
    check = run_credit(gateway, customer["id"])
    viewer = gateway_as(["customers.view", "credit.view"], [locations["home"]])
    assert viewer.get(f"/api/v1/customers/{customer['id']}/credit-checks").status_code == 200
    assert_problem(viewer.post(f"/api/v1/customers/{customer['id']}/credit-checks", json={"bureau": "equifax"}), 403)
    assert_problem(viewer.post(f"/api/v1/credit-checks/{check['id']}/apply"), 403)
    elsewhere = gateway_as(["credit.view", "credit.create", "credit.apply"], [locations["other"]])
    check_path, checks_path = (
        f"/api/v1/credit-checks/{check['id']}",
        f"/api/v1/customers/{customer['id']}/credit-checks",
    )
    assert_hidden(elsewhere.get(check_path), elsewhere.get(unknown_path(check_path, check["id"])))
    assert_hidden(
        elsewhere.post(checks_path, json={"x": 1}),
        elsewhere.post(unknown_path(checks_path, customer["id"]), json={"x": 1}),
    )
    assert_problem(gateway.get("/api/v1/internal/customers/1/credit-subject"), 404)  # never routed
    finished(gateway, check["id"])


def test_a_bureau_outage_ends_in_a_failed_check_with_a_reason(gateway, home, bureau):
    customer = new_customer(gateway, home)
    bureau.control(down=True)
    try:
        check = finished(gateway, run_credit(gateway, customer["id"], bureau="experian")["id"])
    finally:
        bureau.control(down=False)
    assert check["status"] == "failed" and "unavailable" in check["reason"] and check["score"] is None
    assert bureau.inquiries(f"vigil-credit-check-{check['id']}") == []


def test_a_worker_killed_mid_pull_makes_exactly_one_inquiry(stack, gateway, home, bureau):
    customer = new_customer(gateway, home, "1002")  # the sandbox answers this identity slowly
    check = run_credit(gateway, customer["id"], bureau="transunion")
    key = f"vigil-credit-check-{check['id']}"
    gateway.wait_for(lambda: bureau.inquiries(key), timeout=30, interval=0.05, what="the pull to reach the bureau")
    [worker] = [p for p in stack.processes if p.name == "credit-worker"]
    os.killpg(worker.popen.pid, signal.SIGKILL)
    worker.popen.wait(20)
    with open(worker.log_path, "ab") as log:
        worker.popen = subprocess.Popen(
            worker.argv, env=stack.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    deadline = time.monotonic() + 60
    while not is_ready(worker.ready_url):
        assert time.monotonic() < deadline, "the credit worker did not come back"
        time.sleep(0.2)
    done = finished(gateway, check["id"], timeout=120)
    assert done["status"] == "complete" and done["score"] == 751 and done["attempts"] >= 2
    [inquiry] = bureau.inquiries(key)
    assert inquiry["requests"] >= 2, "the redelivered pull asked again, with the same key"


def test_no_ssn_in_the_credit_logs(stack, gateway, home):
    customer = new_customer(gateway, home, "0777")
    finished(gateway, run_credit(gateway, customer["id"])["id"])
    ssn = customer["ssn_plain"]
    for log in stack.log_dir.glob("*.log"):
        text = log.read_text(errors="replace")
        assert ssn not in text and ssn.replace("-", "") not in text, log.name


# --- the ADT PreCheck ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def adt(gateway):
    response = gateway.post(
        "/api/v1/monitoring-companies",
        json={"name": f"ADT E2E {uuid.uuid4().hex[:6]}", "is_adt": True, "precheck_order_enabled": True},
    )
    assert response.status_code == 201, response.text
    return response.json()


def adt_body(location_id: int, company_id: int, last4: str = "0750", **fields) -> dict:
    return (
        customer_body(
            location_id,
            primary_phone=unique_phone(),
            monitoring_company_id=company_id,
            ssn=ssn_ending(last4),
            birthdate="1970-01-02",
            email=f"adt-{uuid.uuid4().hex[:10]}@example.com",
            address_line1="1 Sussex Dr",
            zip="K1A 0B1",
            county="Ottawa",
        )
        | fields
    )


def latest_precheck(gateway, customer_id: int, timeout: float = 180) -> dict:
    def done():
        latest = gateway.get(f"/api/v1/customers/{customer_id}/precheck").json()["latest"]
        return latest if latest and latest["status"] not in ("pending", "running") else None

    return gateway.wait_for(done, timeout=timeout, what=f"the PreCheck of customer {customer_id}")


def test_precheck_runs_in_the_background_after_an_adt_create(gateway, home, adt):
    created = gateway.post("/api/v1/customers?allow_duplicates=true", json=adt_body(home, adt["id"]))
    assert created.status_code == 201, created.text
    latest = latest_precheck(gateway, created.json()["id"])
    assert latest["status"] == "approved" and latest["trigger"] == "create" and latest["reference"]
    declined = gateway.post("/api/v1/customers?allow_duplicates=true", json=adt_body(home, adt["id"], "2001"))
    latest = latest_precheck(gateway, declined.json()["id"])
    assert latest["status"] == "declined" and latest["reasons"]


def test_the_adt_required_fields_are_enforced_at_create(gateway, home, adt):
    body = customer_body(home, primary_phone=unique_phone(), monitoring_company_id=adt["id"])
    refused = assert_problem(gateway.post("/api/v1/customers?allow_duplicates=true", json=body), 422)
    assert set(refused["errors"]) == {"birthdate", "ssn", "email", "address_line1", "zip", "county"}
    commercial = adt_body(home, adt["id"], account_type="Commercial")
    refused = assert_problem(gateway.post("/api/v1/customers?allow_duplicates=true", json=commercial), 422)
    assert set(refused["errors"]) == {"business_name", "business_contact"}
    skipped = gateway.post("/api/v1/customers?allow_duplicates=true&run_precheck=false", json=body)
    assert skipped.status_code == 201
    time.sleep(1)
    assert gateway.get(f"/api/v1/customers/{skipped.json()['id']}/precheck").json()["latest"] is None


def test_a_precheck_refresh_and_the_summary(gateway, home, adt):
    created = gateway.post("/api/v1/customers?allow_duplicates=true", json=adt_body(home, adt["id"], "2002"))
    customer_id = created.json()["id"]
    first = latest_precheck(gateway, customer_id)
    assert first["status"] == "manual_review"
    refreshed = gateway.post(f"/api/v1/customers/{customer_id}/precheck")
    assert refreshed.status_code == 202 and refreshed.json()["trigger"] == "refresh"
    gateway.wait_for(
        lambda: (
            gateway.get(f"/api/v1/customers/{customer_id}/precheck").json()["history"][0]["status"] == "manual_review"
        ),
        timeout=180,
        what="the refreshed PreCheck",
    )
    assert len(gateway.get(f"/api/v1/customers/{customer_id}/precheck").json()["history"]) == 2
    check = finished(gateway, run_credit(gateway, customer_id)["id"])
    gateway.post(f"/api/v1/credit-checks/{check['id']}/apply")

    def graded():
        summary = gateway.get(f"/api/v1/customers/{customer_id}/summary").json()
        return summary if (summary["credit"] or {}).get("grade") else None

    summary = gateway.wait_for(graded, timeout=300, what="the credit grade in the summary")
    assert summary["credit"] == {"grade": check["grade"], "precheck_status": "manual_review"}


def test_the_dealer_number_is_required_when_the_adt_company_requires_one(gateway, home):
    company = gateway.post(
        "/api/v1/monitoring-companies",
        json={"name": f"ADT Dealers {uuid.uuid4().hex[:6]}", "is_adt": True, "requires_dealer_number": True},
    )
    assert company.status_code == 201 and company.json()["requires_dealer_number"] is True
    refused = assert_problem(
        gateway.post("/api/v1/customers?allow_duplicates=true", json=adt_body(home, company.json()["id"])), 422
    )
    assert set(refused["errors"]) == {"dealer_number"}
    made = gateway.post(
        "/api/v1/customers?allow_duplicates=true", json=adt_body(home, company.json()["id"], dealer_number="D-77")
    )
    assert made.status_code == 201, made.text


# --- archived and deleted customers -------------------------------------------------------------------


def test_an_archived_customer_s_credit_is_read_only_and_readable(gateway, home):
    customer = new_customer(gateway, home)
    check = finished(gateway, run_credit(gateway, customer["id"])["id"])
    archived = gateway.post(f"/api/v1/customers/{customer['id']}/archive", json={"confirm": True})
    assert archived.status_code == 202, archived.text
    writes = [
        gateway.post(f"/api/v1/customers/{customer['id']}/credit-checks", json={"bureau": "experian"}),
        gateway.post(f"/api/v1/customers/{customer['id']}/credit-checks/manual", json={"score": 700}),
        gateway.post(f"/api/v1/credit-checks/{check['id']}/apply"),
        gateway.post(f"/api/v1/credit-checks/{check['id']}/skip"),
        gateway.post(f"/api/v1/customers/{customer['id']}/precheck"),
    ]
    for response in writes:
        problem = assert_problem(response, 409)
        assert problem["type"] == "urn:vigil:problem:customer-archived"
        assert problem["unarchive"] == f"/api/v1/customers/{customer['id']}/unarchive"
    assert gateway.get(f"/api/v1/customers/{customer['id']}/credit-checks").status_code == 200
    assert gateway.get(f"/api/v1/credit-checks/{check['id']}").json()["score"] == check["score"]


def test_a_deleted_customer_s_checks_and_prechecks_are_removed(stack, gateway, home):
    from sqlalchemy import create_engine, text

    customer = new_customer(gateway, home)
    check = finished(gateway, run_credit(gateway, customer["id"])["id"])
    assert gateway.post(f"/api/v1/customers/{customer['id']}/precheck").status_code == 202
    assert gateway.delete(f"/api/v1/customers/{customer['id']}").status_code == 204
    url = stack.env.get("VIGIL_CREDIT_DATABASE_URL") or f"sqlite:///{stack.var_dir / 'credit.db'}"
    engine = create_engine(url)

    def rows() -> int:
        with engine.connect() as connection:
            return sum(
                connection.execute(
                    text(f"SELECT count(*) FROM {table} WHERE customer_id = :id"), {"id": customer["id"]}
                ).scalar_one()
                for table in ("credit_checks", "prechecks")
            )

    try:
        gateway.wait_for(lambda: rows() == 0, what="customer.deleted to remove the credit data")
    finally:
        engine.dispose()
    assert_problem(gateway.get(f"/api/v1/credit-checks/{check['id']}"), 404)
