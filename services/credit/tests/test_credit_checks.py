"""Credit checks: request, pull (in the worker), apply, skip, repeat refusal, manual scores, rights."""

import json

import pytest
from sqlalchemy import select

from vigil_credit import tasks
from vigil_credit.bureau import BureauAnswer, BureauFailure, HttpBureau
from vigil_credit.models import CreditCheck
from vigil_shared.testing import assert_hidden, identity_with, unknown_path

URL = "/api/v1/customers/7/credit-checks"


class FakeBureau:
    def __init__(self, answer=None, failure=None):
        self.answer = answer or BureauAnswer("complete", "EQ-1", score=712, raw={"result": "hit", "score": 712})
        self.failure = failure
        self.keys: list[str] = []
        self.subjects: list[dict] = []

    def pull(self, bureau, subject, options, key):
        self.keys.append(key)
        self.subjects.append(subject)
        if self.failure:
            raise BureauFailure(self.failure)
        return self.answer


def pull(runtime, customers, check_id, bureau):
    return tasks.run_pull(runtime, check_id, "req-1", bureau, customers.subject)


def test_a_pull_is_accepted_at_once_and_runs_in_the_worker(api, runtime, customers, outbox):
    response = api.post(URL, json={"bureau": "equifax", "options": {"subject_pin": "1234"}})
    assert response.status_code == 202, response.json
    check = response.json
    assert check["status"] == "pending" and check["score"] is None
    assert response.headers["Location"].endswith(f"/api/v1/credit-checks/{check['id']}")
    assert outbox("credit.check_requested") == [("credit.check_requested", {"check_id": check["id"], "customer_id": 7})]
    bureau = FakeBureau()
    assert pull(runtime, customers, check["id"], bureau) == "complete"
    assert bureau.keys == [f"vigil-credit-check-{check['id']}"]
    done = api.get(f"/api/v1/credit-checks/{check['id']}").json
    assert (done["status"], done["score"], done["grade"], done["transaction_id"]) == ("complete", 712, "A", "EQ-1")
    assert done["run_at"] and done["attempts"] == 1
    # a redelivered task finds the check done and asks nobody
    assert pull(runtime, customers, check["id"], bureau) == "skipped" and len(bureau.keys) == 1


def test_confidential_values_are_stored_encrypted(api, runtime, session, customers):
    check_id = api.post(URL, json={"bureau": "equifax", "options": {"subject_pin": "98765"}}).json["id"]
    pull(runtime, customers, check_id, FakeBureau())
    row = session.get(CreditCheck, check_id)
    assert "98765" not in (row.request_enc or "") and "712" not in (row.response_enc or "")
    assert json.loads(runtime.cipher.decrypt(row.response_enc))["score"] == 712
    assert "subject_pin" not in json.dumps(api.get(f"/api/v1/credit-checks/{check_id}").json)


def test_a_redelivered_running_pull_asks_again_with_the_same_key(api, runtime, session, customers):
    check_id = api.post(URL, json={"bureau": "experian"}).json["id"]
    row = session.get(CreditCheck, check_id)
    row.status = "running"  # the worker died mid-pull
    session.commit()
    bureau = FakeBureau()
    assert pull(runtime, customers, check_id, bureau) == "complete"
    assert bureau.keys == [f"vigil-credit-check-{check_id}"]


def test_no_hit_frozen_and_failure_keep_their_reason(api, runtime, customers):
    outcomes = [
        (FakeBureau(BureauAnswer("no_hit", "T-1", reason="No file found")), "no_hit", "No file found"),
        (FakeBureau(BureauAnswer("frozen", "T-2", reason="File frozen")), "frozen", "File frozen"),
        (FakeBureau(failure="The bureau is unavailable"), "failed", "The bureau is unavailable"),
    ]
    for bureau, status, reason in outcomes:
        check_id = api.post(URL, json={"bureau": "transunion", "confirm_repeat": True}).json["id"]
        assert pull(runtime, customers, check_id, bureau) == status
        check = api.get(f"/api/v1/credit-checks/{check_id}").json
        assert (check["status"], check["reason"], check["score"], check["grade"]) == (status, reason, None, None)


def test_a_customer_without_ssn_or_gone_fails_with_a_reason(api, runtime, customers):
    customers.subjects[7] = {"first_name": "Dana", "ssn": None}
    check_id = api.post(URL, json={"bureau": "equifax"}).json["id"]
    assert pull(runtime, customers, check_id, FakeBureau()) == "failed"
    assert "no SSN" in api.get(f"/api/v1/credit-checks/{check_id}").json["reason"]
    other = api.post(URL, json={"bureau": "experian"}).json["id"]
    del customers.customers[7]
    assert pull(runtime, customers, other, FakeBureau()) == "failed"


def test_the_previous_address_goes_to_the_bureau(api, runtime, customers):
    previous = {"address_line1": "1 Old Rd", "city": "Ottawa", "state": "ON", "zip": "K1A 0B1"}
    check_id = api.post(URL, json={"bureau": "equifax", "previous_address": previous}).json["id"]
    bureau = FakeBureau()
    pull(runtime, customers, check_id, bureau)
    assert bureau.subjects[0]["previous_address"]["address_line1"] == "1 Old Rd"
    assert api.get(f"/api/v1/credit-checks/{check_id}").json["has_previous_address"] is True


def test_a_repeat_pull_within_the_days_is_refused_unless_confirmed(api, customers):
    assert api.post(URL, json={"bureau": "equifax"}).status_code == 202
    refused = api.post(URL, json={"bureau": "equifax"})
    assert refused.status_code == 409 and refused.json["errors"] == {"confirm_repeat": ["Confirm the repeat pull."]}
    assert api.post(URL, json={"bureau": "experian"}).status_code == 202  # another bureau is another file
    assert api.post(URL, json={"bureau": "equifax", "confirm_repeat": True}).status_code == 202
    assert api.patch("/api/v1/credit-settings", json={"repeat_days": 0}).status_code == 200
    assert api.post(URL, json={"bureau": "equifax"}).status_code == 202


def test_the_credit_tab_lists_newest_first(api, customers):
    first = api.post(URL, json={"bureau": "equifax"}).json["id"]
    second = api.post(f"{URL}/manual", json={"score": 640}).json["id"]
    listed = api.get(URL).json
    assert [c["id"] for c in listed["items"]] == [second, first] and listed["total"] == 2
    assert api.get("/api/v1/customers/8/credit-checks").json["total"] == 0


def test_apply_sets_the_customer_score_through_an_event(api, runtime, customers, outbox):
    check_id = api.post(URL, json={"bureau": "equifax"}).json["id"]
    assert api.post(f"/api/v1/credit-checks/{check_id}/apply").status_code == 409  # no answer yet
    pull(runtime, customers, check_id, FakeBureau())
    applied = api.post(f"/api/v1/credit-checks/{check_id}/apply")
    assert applied.status_code == 200 and applied.json["applied"] is True and applied.json["applied_by"] == "admin"
    [(_, data)] = outbox("credit.check_applied")
    assert data["check_id"] == check_id and data["score"] == 712 and data["tracking_number"] == "EQ-1"
    assert data["actor_name"] == "admin" and data["source"] == "api"
    # applying another makes that one the active check
    manual = api.post(f"{URL}/manual", json={"score": 590, "tracking_number": "MAN-1"}).json
    assert manual["status"] == "manual" and manual["grade"] == "D"
    api.post(f"/api/v1/credit-checks/{manual['id']}/apply")
    assert api.get(f"/api/v1/credit-checks/{check_id}").json["applied"] is False
    assert len(outbox("credit.check_applied")) == 2


def test_skip_leaves_the_check_appliable(api, runtime, customers, outbox):
    check_id = api.post(URL, json={"bureau": "equifax"}).json["id"]
    assert api.post(f"/api/v1/credit-checks/{check_id}/skip").status_code == 409  # still pending
    pull(runtime, customers, check_id, FakeBureau())
    skipped = api.post(f"/api/v1/credit-checks/{check_id}/skip").json
    assert skipped["skipped"] is True and skipped["applied"] is False and outbox("credit.check_applied") == []
    assert api.post(f"/api/v1/credit-checks/{check_id}/apply").json["skipped"] is False


def test_a_no_hit_cannot_be_applied(api, runtime, customers):
    check_id = api.post(URL, json={"bureau": "equifax"}).json["id"]
    pull(runtime, customers, check_id, FakeBureau(BureauAnswer("no_hit", "T", reason="none")))
    assert api.post(f"/api/v1/credit-checks/{check_id}/apply").status_code == 409


def test_grade_bands_are_company_settings(api, customers):
    assert api.get("/api/v1/credit-settings").json["grade_bands"][0] == {"grade": "A", "min_score": 700}
    bands = [{"grade": "Gold", "min_score": 750}, {"grade": "Silver", "min_score": 600}]
    assert api.patch("/api/v1/credit-settings", json={"grade_bands": bands}).status_code == 200
    assert api.post(f"{URL}/manual", json={"score": 760}).json["grade"] == "Gold"
    assert api.post(f"{URL}/manual", json={"score": 650}).json["grade"] == "Silver"
    assert api.post(f"{URL}/manual", json={"score": 500}).json["grade"] is None
    twice = [{"grade": "A", "min_score": 700}, {"grade": "A", "min_score": 600}]
    assert api.patch("/api/v1/credit-settings", json={"grade_bands": twice}).status_code == 422
    clerk = api.as_(identity_with("credit.view", "credit.create"))
    assert clerk.patch("/api/v1/credit-settings", json={"repeat_days": 1}).status_code == 403


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"bureau": "acme"},
        {"bureau": "equifax", "options": {"subject_pin": "12"}},
        {"bureau": "equifax", "ssn": "123-45-6789"},
        {"bureau": "equifax", "previous_address": {"city": "x"}},
    ],
)
def test_bad_bodies_are_422_and_write_nothing(api, session, customers, body):
    response = api.post(URL, json=body)
    assert response.status_code == 422 and response.headers["Content-Type"].startswith("application/problem+json")
    assert session.scalars(select(CreditCheck)).all() == []


def test_manual_scores_are_bounded(api, customers):
    for score in (299, 851, "700", None):
        assert api.post(f"{URL}/manual", json={"score": score}).status_code == 422


def test_rights_are_checked_at_the_customers_location(api, runtime, customers):
    check_id = api.post(URL, json={"bureau": "equifax"}).json["id"]
    pull(runtime, customers, check_id, FakeBureau())
    viewer = api.as_(identity_with("credit.view"))
    assert viewer.get(URL).status_code == 200
    assert viewer.post(URL, json={"bureau": "experian"}).status_code == 403
    assert viewer.post(f"/api/v1/credit-checks/{check_id}/apply").status_code == 403
    runner = api.as_(identity_with("credit.view", "credit.create"))
    assert runner.post(f"/api/v1/credit-checks/{check_id}/skip").status_code == 403
    # rights held only at location 1: customer 8 (location 2) is out of reach, whatever the body
    elsewhere = api.as_(identity_with("credit.view", "credit.create", "credit.apply"))
    # ... and answers exactly what an unknown customer or check answers (an id probes nothing)
    checks = "/api/v1/customers/8/credit-checks"
    assert_hidden(elsewhere.get(checks), elsewhere.get(unknown_path(checks, 8)))
    assert_hidden(elsewhere.post(checks, json={"junk": 1}), elsewhere.post(unknown_path(checks, 8), json={"junk": 1}))
    other_check = api.post("/api/v1/customers/8/credit-checks/manual", json={"score": 700}).json["id"]
    check = f"/api/v1/credit-checks/{other_check}"
    assert_hidden(elsewhere.get(check), elsewhere.get(unknown_path(check, other_check)))
    assert_hidden(elsewhere.post(f"{check}/apply"), elsewhere.post(unknown_path(f"{check}/apply", other_check)))
    assert api.as_(identity_with("customers.view")).get(URL).status_code == 403


def test_unknown_customer_or_check_is_404_and_a_down_customer_service_503(api, customers):
    assert api.get("/api/v1/customers/99/credit-checks").status_code == 404
    assert api.post("/api/v1/customers/99/credit-checks", json={"bureau": "equifax"}).status_code == 404
    assert api.get("/api/v1/credit-checks/12345").status_code == 404
    customers.down = True
    down = api.post(URL, json={"bureau": "equifax"})
    assert down.status_code == 503 and down.headers["Retry-After"]


def test_a_pull_request_with_an_idempotency_key_is_one_check(api, customers):
    headers = {"Idempotency-Key": "pull-once-1001"}
    first = api.post(URL, json={"bureau": "equifax"}, headers=headers)
    again = api.post(URL, json={"bureau": "equifax"}, headers=headers)
    assert first.status_code == again.status_code == 202 and first.json["id"] == again.json["id"]


# --- the HTTP adapter against the sandbox bureau ----------------------------------------------------


def adapter(url, **options):
    sleeps = []
    return HttpBureau(url, **({"timeout": 2.0, "retries": 2, "backoff": 0.1} | options), sleep=sleeps.append), sleeps


def subject(last4):
    return {"first_name": "Dana", "last_name": "Reyes", "ssn": f"123-45-{last4}"}


def test_the_adapter_reads_each_sandbox_outcome(sandbox_bureau):
    url, state = sandbox_bureau
    bureau, _ = adapter(url)
    hit = bureau.pull("equifax", subject("0750"), {}, "adapter-hit-1")
    assert (hit.status, hit.score) == ("complete", 499) and hit.transaction_id
    assert bureau.pull("equifax", subject("1000"), {}, "adapter-nohit-1").status == "no_hit"
    frozen = bureau.pull("equifax", subject("1001"), {}, "adapter-frozen-1")
    assert frozen.status == "frozen" and "frozen" in frozen.reason
    assert bureau.pull("equifax", subject("1002"), {}, "adapter-slow-1").status == "complete"


def test_the_adapter_retries_with_backoff_then_fails_with_a_reason(sandbox_bureau):
    url, _ = sandbox_bureau
    bureau, sleeps = adapter(url)
    with pytest.raises(BureauFailure) as failure:
        bureau.pull("equifax", subject("1004"), {}, "adapter-broken-1")
    assert (
        "unavailable" in failure.value.reason and "503" in failure.value.reason and "3 attempts" in failure.value.reason
    )
    assert sleeps == [0.1, 0.2]


def test_a_flaky_bureau_is_retried_with_the_same_key_and_is_one_inquiry(sandbox_bureau):
    url, state = sandbox_bureau
    bureau, sleeps = adapter(url)
    assert bureau.pull("equifax", subject("1005"), {}, "adapter-flaky-1").status == "complete"
    assert sleeps == [0.1] and state.inquiries["adapter-flaky-1"]["requests"] == 2


def test_a_hanging_bureau_times_out_and_nothing_waits_for_ever(sandbox_bureau):
    url, _ = sandbox_bureau
    bureau, sleeps = adapter(url, timeout=0.3, retries=1)
    with pytest.raises(BureauFailure) as failure:
        bureau.pull("equifax", subject("1003"), {}, "adapter-hang-1")
    assert "timed out" in failure.value.reason


def test_a_bureau_that_cannot_be_reached_fails_with_a_reason():
    bureau, sleeps = adapter("http://127.0.0.1:9", retries=1)
    with pytest.raises(BureauFailure) as failure:
        bureau.pull("equifax", subject("0750"), {}, "adapter-nowhere-1")
    assert "could not be reached" in failure.value.reason and len(sleeps) == 1


def test_a_bureau_reason_echoing_the_ssn_is_kept_masked():
    """A bureau's reason is stored and shown to credit viewers, who may not read the SSN it may echo."""
    from vigil_credit import bureau

    answer = bureau._answer({"result": "no_hit", "message": "No file found for SSN 123-45-6789."})
    assert answer.reason == "No file found for SSN ***."
    assert (
        bureau.BureauFailure("refused (400): the SSN 123456789 is invalid").reason
        == "refused (400): the SSN *** is invalid"
    )


def test_an_outsiders_apply_answers_404_without_waiting_on_a_held_check(api, runtime, customers):
    """The check's scope is checked before its row is locked: while another transaction holds the check, a
    caller from another office gets the unknown-id 404 at once (waiting would tell them it exists)."""
    from concurrent.futures import ThreadPoolExecutor

    from sqlalchemy import text

    other_check = api.post("/api/v1/customers/8/credit-checks/manual", json={"score": 700}).json["id"]
    elsewhere = api.as_(identity_with("credit.view", "credit.create", "credit.apply"))  # location 1; customer 8: 2
    path = f"/api/v1/credit-checks/{other_check}/apply"
    unknown = elsewhere.post(unknown_path(path, other_check))
    with ThreadPoolExecutor(1) as pool, runtime.db.engine.connect() as holder:
        holder.execute(text("UPDATE credit_checks SET status = status WHERE id = :id"), {"id": other_check})
        try:
            answer = pool.submit(elsewhere.post, path).result(timeout=3)
        finally:
            holder.rollback()
    assert_hidden(answer, unknown)
    assert api.post(path).status_code == 200  # the check itself is fine


ECHOES = [
    "Subject DOB 1980-02-03 does not match the file",
    "DOB 02/03/1980 and SSN 123.45.0750 do not match",
    "No file for 19800203 / 123 45 0750",
    "SSN on file 123-45-0750",
]


@pytest.mark.parametrize("echo", ECHOES)
def test_a_reason_never_echoes_the_subjects_ssn_or_birthdate(api, runtime, customers, echo):
    """A bureau's words are shown to every credit viewer, who may not read the subject's SSN or birthdate:
    the subject's own values are masked in whatever form the bureau wrote them, not only SSN-shaped runs."""
    customers.subjects[7] = {"first_name": "Dana", "ssn": "123-45-0750", "birthdate": "1980-02-03"}
    for bureau in (FakeBureau(failure=f"refused (400): {echo}"), FakeBureau(BureauAnswer("no_hit", "T", reason=echo))):
        check_id = api.post(URL, json={"bureau": "equifax", "confirm_repeat": True}).json["id"]
        pull(runtime, customers, check_id, bureau)
        reason = api.get(f"/api/v1/credit-checks/{check_id}").json["reason"]
        assert "***" in reason, reason
        for value in ("1980", "02/03", "0203", "0750", "123"):
            assert value not in reason, reason


def test_a_transaction_id_echoing_the_subjects_ssn_is_kept_masked(api, runtime, customers, outbox):
    """A bureau's transaction id is its words too: it becomes the customer's credit tracking number and
    travels in ``credit.check_applied`` (kept by the gateway's change feed in plaintext, sent to webhook
    subscribers), so one holding the subject's SSN or birthdate is masked whole; a plain id is kept as is
    (however many digits it has: it is not masked for its shape, only for holding the subject's values)."""
    customers.subjects[7] = {"first_name": "Dana", "ssn": "123-45-0750", "birthdate": "1980-02-03"}
    echoing = BureauAnswer("complete", "EQ-123450750-19800203", score=712, raw={"result": "hit", "score": 712})
    check_id = api.post(URL, json={"bureau": "equifax", "confirm_repeat": True}).json["id"]
    pull(runtime, customers, check_id, FakeBureau(echoing))
    kept = api.get(f"/api/v1/credit-checks/{check_id}").json["transaction_id"]
    assert kept == "***", kept
    assert api.post(f"/api/v1/credit-checks/{check_id}/apply").status_code == 200
    [(_, data)] = outbox("credit.check_applied")
    assert data["tracking_number"] == kept
    plain = api.post(URL, json={"bureau": "equifax", "confirm_repeat": True}).json["id"]
    long_id = BureauAnswer("complete", "EQ-4000000000000002", score=712, raw={"result": "hit", "score": 712})
    pull(runtime, customers, plain, FakeBureau(long_id))
    assert api.get(f"/api/v1/credit-checks/{plain}").json["transaction_id"] == "EQ-4000000000000002"


@pytest.mark.parametrize(
    "answer",
    [
        {"result": "hit", "score": 712, "transaction_id": {"id": 1}},
        {"result": "hit", "score": 712, "transaction_id": "T" * 101},
        {"result": "no_hit", "message": {"text": "none"}},
    ],
)
def test_a_malformed_bureau_answer_is_a_failure_with_a_reason_never_kept_garbage(answer):
    from vigil_credit.bureau import _answer

    with pytest.raises(BureauFailure, match="could not be read"):
        _answer(answer)
