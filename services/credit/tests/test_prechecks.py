"""The ADT PreCheck: started by the customer's created event or refreshed, run by the worker."""

import uuid

import pytest

from vigil_credit import tasks
from vigil_credit.adt import HttpAdt, PreCheckAnswer
from vigil_credit.bureau import BureauFailure, HttpBureau
from vigil_credit.models import PreCheck
from vigil_shared.testing import assert_hidden, identity_with, incoming_event

URL = "/api/v1/customers/7/precheck"


class FakeAdt:
    def __init__(self, answer=None, failure=None):
        self.answer = answer or PreCheckAnswer("approved", "ADT-1", [], {"result": "approved"})
        self.failure = failure
        self.seen: list[tuple[dict, str]] = []

    def precheck(self, customer, key):
        self.seen.append((customer, key))
        if self.failure:
            raise BureauFailure(self.failure)
        return self.answer


def created_event(customer_id: int, precheck: bool) -> dict:
    data = {"customer_id": customer_id, "location_id": 1, "kind": "customer", "precheck": precheck}
    return incoming_event("customer.created", data, source="customer", request_id="req-create")


def test_a_created_adt_customer_gets_its_precheck_started(runtime, session, customers, outbox):
    consumer = tasks.event_consumer(runtime)
    assert consumer.consume(created_event(7, precheck=True)) is True
    assert consumer.consume(created_event(8, precheck=False)) is True
    [(_, data)] = outbox("credit.precheck_requested")
    assert data["customer_id"] == 7
    [row] = session.query(PreCheck).all()
    assert (row.customer_id, row.status, row.trigger) == (7, "pending", "create")


def test_the_worker_runs_it_and_the_result_shows_with_its_history(api, runtime, customers):
    first = api.post(URL)
    assert first.status_code == 202 and first.json["status"] == "pending" and first.json["trigger"] == "refresh"
    adt = FakeAdt()
    assert tasks.run_precheck(runtime, first.json["id"], None, adt, customers.subject) == "approved"
    customer, key = adt.seen[0]
    assert key == f"vigil-precheck-{first.json['id']}" and customer["ssn"] == "123-45-0750"
    assert tasks.run_precheck(runtime, first.json["id"], None, adt, customers.subject) == "skipped"
    second = api.post(URL).json
    declined = FakeAdt(PreCheckAnswer("declined", "ADT-2", ["Address not serviceable"], {}))
    tasks.run_precheck(runtime, second["id"], None, declined, customers.subject)
    shown = api.get(URL).json
    assert shown["latest"]["status"] == "declined" and shown["latest"]["reasons"] == ["Address not serviceable"]
    assert [p["status"] for p in shown["history"]] == ["declined", "approved"]


def test_an_adt_outage_is_an_error_with_its_reason(api, runtime, customers):
    precheck = api.post(URL).json
    assert (
        tasks.run_precheck(runtime, precheck["id"], None, FakeAdt(failure="ADT is down"), customers.subject) == "error"
    )
    assert api.get(URL).json["latest"]["error"] == "ADT is down"


def test_no_precheck_yet_and_rights(api, customers):
    assert api.get(URL).json == {"latest": None, "history": []}
    viewer = api.as_(identity_with("credit.view"))
    assert viewer.get(URL).status_code == 200 and viewer.post(URL).status_code == 403
    elsewhere = api.as_(identity_with("credit.view", "credit.create"))
    assert_hidden(elsewhere.get("/api/v1/customers/8/precheck"), elsewhere.get("/api/v1/customers/99/precheck"))
    assert api.get("/api/v1/customers/99/precheck").status_code == 404


@pytest.mark.parametrize(("last4", "status"), [("0750", "approved"), ("2001", "declined"), ("2002", "manual_review")])
def test_the_adt_adapter_against_the_sandbox(sandbox_bureau, last4, status):
    url, _ = sandbox_bureau
    adt = HttpAdt(HttpBureau(url, timeout=2.0, retries=1, backoff=0.01))
    answer = adt.precheck({"first_name": "Dana", "ssn": f"123-45-{last4}"}, f"adapter-precheck-{last4}")
    assert answer.status == status and answer.reference
    assert bool(answer.reasons) == (status != "approved")


def test_the_adt_adapter_fails_with_a_reason_after_its_retries(sandbox_bureau):
    url, _ = sandbox_bureau
    adt = HttpAdt(HttpBureau(url, timeout=2.0, retries=1, backoff=0.01))
    with pytest.raises(BureauFailure) as failure:
        adt.precheck({"ssn": "123-45-2003"}, "adapter-precheck-err")
    assert "ADT PreCheck is unavailable" in failure.value.reason


def updated_event(customer_id: int, changed: list[str]) -> dict:
    return created_event(customer_id, False) | {
        "id": str(uuid.uuid4()),
        "type": "customer.updated",
        "data": {"customer_id": customer_id, "changed": changed, "location_id": 1},
    }


def test_a_company_setting_reruns_the_precheck_when_phone_address_or_ssn_change(api, runtime, session, customers):
    consumer = tasks.event_consumer(runtime)
    consumer.consume(created_event(7, precheck=True))
    consumer.consume(updated_event(7, ["primary_phone"]))
    assert session.query(PreCheck).count() == 1  # the setting is off by default
    assert api.patch("/api/v1/credit-settings", json={"precheck_rerun_on_change": True}).status_code == 200
    consumer.consume(updated_event(7, ["spouse"]))
    consumer.consume(updated_event(8, ["ssn"]))  # never pre-checked
    assert session.query(PreCheck).count() == 1
    consumer.consume(updated_event(7, ["zip", "spouse"]))
    session.expire_all()
    triggers = sorted(p.trigger for p in session.query(PreCheck).all())
    assert triggers == ["change", "create"]


def test_adt_reasons_echoing_the_ssn_are_kept_masked():
    from vigil_credit import adt

    class Echo:
        def post(self, path, body, key, who):
            return {"result": "declined", "reasons": ["SSN 123-45-6789 failed identity verification"]}

    answer = adt.HttpAdt(Echo()).precheck({"ssn": "123-45-6789"}, "key-1")  # type: ignore[arg-type]
    assert answer.reasons == ["SSN *** failed identity verification"]


def test_precheck_reasons_and_errors_never_echo_the_subjects_ssn_or_birthdate(api, runtime, customers):
    """ADT's reasons and refusals are shown to every credit viewer: the subject's SSN and birthdate are
    masked in whatever form ADT wrote them."""
    customers.subjects[7] = {"first_name": "Dana", "ssn": "123-45-0750", "birthdate": "1980-02-03"}
    echo = "DOB 02/03/1980 and SSN 123.45.0750 do not match"
    declined = FakeAdt(PreCheckAnswer("declined", "ADT-3", [echo], {}))
    tasks.run_precheck(runtime, api.post(URL).json["id"], None, declined, customers.subject)
    tasks.run_precheck(runtime, api.post(URL).json["id"], None, FakeAdt(failure=f"refused: {echo}"), customers.subject)
    shown = api.get(URL).json["history"]
    for words in (shown[0]["error"], *shown[1]["reasons"]):
        assert "***" in words, words
        for value in ("1980", "02/03", "0750", "123.45"):
            assert value not in words, words


def test_an_adt_reference_holding_the_subjects_ssn_is_kept_masked(api, runtime, customers):
    """ADT's reference is shown to every credit viewer and sent in ``credit.precheck_requested`` webhook
    payloads: one holding the subject's SSN or birthdate is masked whole, a plain one kept as it came."""
    customers.subjects[7] = {"first_name": "Dana", "ssn": "123-45-0750", "birthdate": "1980-02-03"}
    echoing = FakeAdt(PreCheckAnswer("approved", "ADT-123450750", [], {}))
    tasks.run_precheck(runtime, api.post(URL).json["id"], None, echoing, customers.subject)
    plain = FakeAdt(PreCheckAnswer("approved", "ADT-4000000000000002", [], {}))
    tasks.run_precheck(runtime, api.post(URL).json["id"], None, plain, customers.subject)
    shown = api.get(URL).json["history"]
    assert [item["reference"] for item in shown] == ["ADT-4000000000000002", "***"]


class _Posting:
    def __init__(self, answer):
        self.answer = answer

    def post(self, path, body, key, who):
        return self.answer


@pytest.mark.parametrize(
    "answer",
    [
        {"result": "approved", "reference": {"id": 1}},
        {"result": "approved", "reference": "R" * 101},
        {"result": "declined", "reference": "ADT-1", "reasons": "not a list"},
        {"result": "declined", "reference": "ADT-1", "reasons": [{"code": 1}]},
    ],
)
def test_a_malformed_adt_answer_is_a_failure_with_a_reason_never_kept_garbage(answer):
    with pytest.raises(BureauFailure, match="could not be read"):
        HttpAdt(_Posting(answer)).precheck({}, "key-1")
