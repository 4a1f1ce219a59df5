"""Credit takes part in archiving read-only (writes under an archived customer answer the shared
409, reads work) and removes a deleted customer's checks and PreChecks with their encrypted answers."""

from sqlalchemy import func, select

from vigil_credit import tasks
from vigil_credit.bureau import BureauAnswer
from vigil_credit.models import CreditCheck, PreCheck
from vigil_shared.testing import incoming_event

ARCHIVED = "urn:vigil:problem:customer-archived"


class Bureau:
    def pull(self, bureau, subject, options, key):
        return BureauAnswer("complete", "EQ-9", score=701, raw={"result": "hit", "score": 701})


def test_an_archived_customer_s_credit_is_read_only(api, runtime, customers):
    check_id = api.post("/api/v1/customers/7/credit-checks", json={"bureau": "equifax"}).json["id"]
    tasks.run_pull(runtime, check_id, None, Bureau(), customers.subject)
    customers.archived.add(7)
    writes = [
        api.post("/api/v1/customers/7/credit-checks", json={"bureau": "experian"}),
        api.post("/api/v1/customers/7/credit-checks/manual", json={"score": 700}),
        api.post(f"/api/v1/credit-checks/{check_id}/apply"),
        api.post(f"/api/v1/credit-checks/{check_id}/skip"),
        api.post("/api/v1/customers/7/precheck"),
    ]
    for response in writes:
        assert response.status_code == 409, response.json
        assert response.json["type"] == ARCHIVED and response.json["unarchive"] == "/api/v1/customers/7/unarchive"
    assert api.get("/api/v1/customers/7/credit-checks").status_code == 200
    assert api.get(f"/api/v1/credit-checks/{check_id}").json["score"] == 701
    assert api.get("/api/v1/customers/7/precheck").status_code == 200
    customers.archived.discard(7)  # unarchived: writable again
    assert api.post(f"/api/v1/credit-checks/{check_id}/apply").status_code == 200


def deleted_event(customer_id: int) -> dict:
    return incoming_event("customer.deleted", {"customer_id": customer_id}, source="customer", request_id="req-delete")


def test_customer_deleted_removes_its_checks_prechecks_and_their_encrypted_answers(api, runtime, session, customers):
    mine = api.post("/api/v1/customers/7/credit-checks", json={"bureau": "equifax"}).json["id"]
    tasks.run_pull(runtime, mine, None, Bureau(), customers.subject)
    running = api.post("/api/v1/customers/7/credit-checks", json={"bureau": "experian"}).json["id"]
    api.post("/api/v1/customers/7/precheck")
    kept = api.post("/api/v1/customers/8/credit-checks/manual", json={"score": 650}).json["id"]
    session.expire_all()
    assert session.get(CreditCheck, mine).response_enc is not None

    consumer = tasks.event_consumer(runtime)
    event = deleted_event(7)
    assert consumer.consume(event) is True
    assert consumer.consume(event) is False
    session.expire_all()
    for model in (CreditCheck, PreCheck):
        assert session.scalar(select(func.count()).select_from(model).where(model.customer_id == 7)) == 0
    assert session.get(CreditCheck, kept) is not None
    # a pull that was still on its way finds its check gone and records nothing
    assert tasks.run_pull(runtime, running, None, Bureau(), customers.subject) == "skipped"
    assert session.scalar(select(func.count()).select_from(CreditCheck).where(CreditCheck.customer_id == 7)) == 0
