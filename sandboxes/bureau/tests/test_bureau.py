"""The sandbox bureau answers like a real one: by test identity, once per idempotency key."""

import threading

import pytest

from vigil_sandbox_bureau import app as sandbox


@pytest.fixture
def client(monkeypatch):
    monkeypatch.setattr(sandbox, "SLOW_SECONDS", 0.3)
    return sandbox.create_app().test_client()


def inquire(client, ssn, key="key-00000001", bureau="equifax"):
    body = {"bureau": bureau, "subject": {"first_name": "Dana", "last_name": "Reyes", "ssn": ssn}}
    return client.post("/v1/inquiries", json=body, headers={"Idempotency-Key": key})


def test_scores_are_deterministic_by_identity(client):
    first = inquire(client, "123-45-0750", key="key-a0000001")
    again = inquire(client, "123-45-0750", key="key-a0000002")
    assert first.status_code == again.status_code == 200
    assert first.json["result"] == "hit" and first.json["score"] == again.json["score"] == 300 + 750 % 551
    assert first.json["transaction_id"] != again.json["transaction_id"]


@pytest.mark.parametrize(("ssn", "result"), [("123-45-1000", "no_hit"), ("123-45-1001", "frozen")])
def test_no_hit_and_frozen(client, ssn, result):
    answer = inquire(client, ssn)
    assert answer.status_code == 200 and answer.json["result"] == result and "score" not in answer.json


def test_broken_identity_and_outage_answer_503_and_are_not_inquiries(client):
    assert inquire(client, "123-45-1004").status_code == 503
    client.post("/sandbox/control", json={"down": True})
    assert inquire(client, "123-45-0750", key="key-b0000001").status_code == 503
    client.post("/sandbox/control", json={"down": False})
    assert client.get("/sandbox/inquiries").json["count"] == 0


def test_a_repeated_key_is_not_a_second_inquiry(client):
    first = inquire(client, "123-45-0750")
    replay = inquire(client, "123-45-0750")
    assert replay.json["inquiry_id"] == first.json["inquiry_id"] and replay.json["replayed"] is True
    listed = client.get("/sandbox/inquiries").json
    assert listed["count"] == 1 and listed["inquiries"][0]["requests"] == 2


def test_a_repeat_while_the_first_is_running_waits_for_its_answer(client):
    answers = []
    threads = [threading.Thread(target=lambda: answers.append(inquire(client, "123-45-1002").json)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len({a["inquiry_id"] for a in answers}) == 1
    assert client.get("/sandbox/inquiries").json["count"] == 1


def test_the_same_key_for_another_subject_is_refused(client):
    inquire(client, "123-45-0750")
    assert inquire(client, "123-45-0751").status_code == 422


def test_flaky_identity_fails_once_then_answers(client):
    assert inquire(client, "123-45-1005").status_code == 500
    assert inquire(client, "123-45-1005").json["result"] == "hit"


def test_bad_requests(client):
    assert client.post("/v1/inquiries", json={"bureau": "equifax", "subject": {}}).status_code == 400
    assert inquire(client, "123-45-0750", bureau="acme").status_code == 400
    assert inquire(client, "12", key="key-c0000001").status_code == 400
    assert client.get("/nowhere").status_code == 404


def precheck(client, ssn, key="pre-00000001"):
    body = {"customer": {"first_name": "Dana", "ssn": ssn, "zip": "84601"}}
    return client.post("/adt/v1/prechecks", json=body, headers={"Idempotency-Key": key})


@pytest.mark.parametrize(("last4", "result"), [("0750", "approved"), ("2001", "declined"), ("2002", "manual_review")])
def test_adt_precheck_outcomes(client, last4, result):
    answer = precheck(client, f"123-45-{last4}")
    assert answer.status_code == 200 and answer.json["result"] == result and answer.json["reference"]
    if result == "declined":
        assert answer.json["reasons"]


def test_adt_precheck_errors_and_idempotency(client):
    assert precheck(client, "123-45-2003").status_code == 503
    first, again = precheck(client, "123-45-0750", "pre-once-001"), precheck(client, "123-45-0750", "pre-once-001")
    assert first.json["reference"] == again.json["reference"]
    listed = client.get("/sandbox/prechecks").json
    assert listed["count"] == 1 and listed["prechecks"][0]["requests"] == 2


def test_it_counts_the_most_requests_held_at_once_for_adt_and_the_bureau_apart(client):
    client.post("/sandbox/control", json={"latency_ms": 200})

    def precheck(n):
        client.post(
            "/adt/v1/prechecks", json={"customer": {"ssn": "123-45-0750"}}, headers={"Idempotency-Key": f"adt-{n:08d}"}
        )

    threads = [threading.Thread(target=precheck, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert client.get("/sandbox/concurrency").json == {
        "adt": {"in_flight": 0, "max_in_flight": 3},
        "bureau": {"in_flight": 0, "max_in_flight": 0},
    }
    assert client.get("/sandbox/prechecks").json["max_in_flight"] == 3
    client.post("/sandbox/control", json={"reset_max_in_flight": True})
    assert client.get("/sandbox/concurrency").json["adt"]["max_in_flight"] == 0
