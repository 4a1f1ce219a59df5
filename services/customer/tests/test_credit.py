"""What the customer service does for credit: the audited subject read, and an applied check's score."""

from helpers import create, customer

from vigil_customer.tasks import event_consumer
from vigil_shared.identity import service_identity
from vigil_shared.testing import identity_with, incoming_event

SUBJECT = "/api/v1/internal/customers/{}/credit-subject"
CREDIT = service_identity("credit", {"confidential.ssn.view", "confidential.birthdate.view"})


def test_the_credit_service_reads_the_subject_unmasked_and_the_read_is_audited(api):
    record = create(api, customer(ssn="123-45-6789", birthdate="1980-02-03", zip="84601"))
    subject = api.as_(CREDIT).get(SUBJECT.format(record["id"]))
    assert subject.status_code == 200, subject.json
    assert subject.json["ssn"] == "123-45-6789" and subject.json["birthdate"] == "1980-02-03"
    assert subject.json["last_name"] == record["last_name"]
    entries = api.get(f"/api/v1/customers/{record['id']}/history").json["items"]
    [read] = [e for e in entries if e["action"] == "credit_subject_read"]
    assert read["actor_name"] == "credit" and read["source"] == "workflow" and read["new_value"] == "ssn, birthdate"


def test_only_a_service_with_both_confidential_rights_reads_the_subject(api):
    record = create(api, customer(ssn="123-45-6789"))
    url = SUBJECT.format(record["id"])
    assert api.get(url).status_code == 403  # a user, even an administrator
    assert api.as_(identity_with("confidential.ssn.view", "confidential.birthdate.view")).get(url).status_code == 403
    assert api.as_(service_identity("credit", {"confidential.ssn.view"})).get(url).status_code == 403
    assert api.as_(service_identity("property", {"customers.view"})).get(url).status_code == 403
    # another service, even holding both rights (a compromised or misconfigured one), is not the credit service
    both = {"confidential.ssn.view", "confidential.birthdate.view"}
    for other in ("billing", "gateway", "integration:credit"):
        refused = api.as_(service_identity(other, both)).get(url)
        assert refused.status_code == 403 and "123-45-6789" not in refused.get_data(as_text=True)
    assert api.as_(None).get(url).status_code == 401
    assert api.as_(CREDIT).get(SUBJECT.format(999999)).status_code == 404


def test_the_subject_read_is_not_in_the_published_document(api):
    assert not any("internal" in path for path in api.get("/openapi.json").json["paths"])


def applied_event(**data) -> dict:
    return incoming_event("credit.check_applied", data, source="credit", request_id="req-apply")


def test_an_applied_check_sets_the_score_and_tracking_number_with_history(api, runtime):
    record = create(api, customer())
    consumer = event_consumer(runtime)
    event = applied_event(
        check_id=4,
        customer_id=record["id"],
        score=712,
        tracking_number="EQ-123",
        actor_id="user:9",
        actor_name="office-anna",
        source="api",
    )
    assert consumer.consume(event) is True
    assert consumer.consume(event) is False
    updated = api.get(f"/api/v1/customers/{record['id']}").json
    assert (updated["credit_score"], updated["credit_grade"], updated["credit_tracking_number"]) == (712, "A", "EQ-123")
    entries = api.get(f"/api/v1/customers/{record['id']}/history", query_string={"field": "credit_score"}).json
    [entry] = entries["items"]
    assert entry["new_value"] == "712" and entry["actor_name"] == "office-anna" and entry["source"] == "api"


def test_an_applied_check_of_a_deleted_customer_is_ignored(runtime):
    assert event_consumer(runtime).consume(applied_event(check_id=1, customer_id=999999, score=700)) is True
