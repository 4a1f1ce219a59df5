"""Central stations' messages in the gateway: the group-writing intake and the shared rate limit.

The property service is stood in for by the intake's ``forward`` (the e2e suite runs the real one)."""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vigil_gateway import integrations
from vigil_gateway.models import IncomingMessage
from vigil_shared.db import Database


class Station:
    """Stands in for the property service: records each group it is sent; every account matches."""

    def __init__(self):
        self.groups: list[list[dict]] = []
        self.failing = False
        self.lock = threading.Lock()

    def __call__(self, station, request_id, items):
        if self.failing:
            raise RuntimeError("the property service answered 503")
        with self.lock:
            self.groups.append(items)
        return [7 for _ in items]


def install(app) -> Station:
    station = Station()
    app.extensions["vigil_gateway_intake"].forward = station
    return station


def create_integration(client, auth, per_minute=6000) -> dict:
    response = client.post(
        "/api/v1/integrations",
        json={"name": f"Station {uuid.uuid4().hex[:6]}", "rate_limit_per_minute": per_minute},
        headers=auth,
    )
    assert response.status_code == 201, response.json
    return response.json


def post_signal(client, integration, message_id=None, **payload):
    body = json.dumps({"account_number": "CS-1", "type": "alarm"} | payload)
    message_id = message_id or f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    headers = {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(integration["secret"]).sign(message_id, now, body),
        "Content-Type": "application/json",
    }
    return client.post(f"/api/v1/integrations/{integration['id']}/signals", data=body, headers=headers)


@pytest.fixture
def station(app):
    previous = app.extensions["vigil_gateway_intake"].forward
    yield install(app)
    app.extensions["vigil_gateway_intake"].forward = previous


def test_concurrent_messages_are_written_in_groups_each_answered(app, client, auth, station, db):
    integration = create_integration(client, auth)
    answers: list[int] = []

    def send():
        answers.append(post_signal(app.test_client(), integration).status_code)

    senders = [threading.Thread(target=send) for _ in range(12)]
    for sender in senders:
        sender.start()
    for sender in senders:
        sender.join()
    assert answers == [200] * 12
    assert sum(len(group) for group in station.groups) == 12
    with db.transaction() as session:
        assert session.query(IncomingMessage).count() == 12


def test_a_repeated_id_is_refused_and_a_failed_group_keeps_no_id(client, auth, station, db):
    integration = create_integration(client, auth)
    first = post_signal(client, integration, message_id="msg_once")
    assert first.status_code == 200 and first.json == {"status": "received", "matched": True}
    assert post_signal(client, integration, message_id="msg_once").status_code == 409
    station.failing = True
    failed = post_signal(client, integration, message_id="msg_retry")
    assert failed.status_code == 503 and failed.headers["Content-Type"] == "application/problem+json"
    station.failing = False
    assert post_signal(client, integration, message_id="msg_retry").status_code == 200  # the retry is applied
    assert [item["message_id"] for group in station.groups for item in group] == ["msg_once", "msg_retry"]
    assert post_signal(client, integration, type="nope").status_code == 422


def _within_one_minute(check) -> None:
    """Runs ``check`` again when the minute turned while it ran (the window is a calendar minute)."""
    for _ in range(2):
        minute = int(time.time() // 60)
        result = check()
        if int(time.time() // 60) == minute:
            return result
    raise AssertionError("the minute kept turning")


def test_the_rate_limit_is_shared_by_gateway_processes(app_with, client, auth, gateway_db_url, db):
    first, second = Database(gateway_db_url), Database(gateway_db_url)
    try:

        def limiter_check():
            name = f"test:{uuid.uuid4().hex}"
            counted = [
                integrations.DatabaseRateLimiter(first).take(name, 3, 2)[0],
                integrations.DatabaseRateLimiter(second).take(name, 3, 2)[0],
                integrations.DatabaseRateLimiter(first).take(name, 3, 1)[0],
            ]
            assert counted == [2, 1, 0]

        _within_one_minute(limiter_check)
    finally:
        first.dispose()
        second.dispose()

    # two gateway apps on one database: the limit holds across both
    one, two = app_with(), app_with()
    install(one), install(two)
    integration = create_integration(client, auth, per_minute=3)

    def apps_check():
        return [post_signal(app.test_client(), integration).status_code for app in (one, two, one, two)]

    answers = _within_one_minute(apps_check)
    if answers.count(200) < 3:  # an earlier attempt in this minute used some of the allowance
        assert answers.count(200) + answers.count(429) == 4
    else:
        assert answers == [200, 200, 200, 429]
    refused = post_signal(two.test_client(), integration)
    assert refused.status_code == 429 and int(refused.headers["Retry-After"]) >= 1


def test_a_rotated_secret_signs_at_once_though_the_integration_was_just_read(client, auth, station):
    integration = create_integration(client, auth)
    assert post_signal(client, integration).status_code == 200  # now kept a moment by this process
    rotated = client.post(
        f"/api/v1/integrations/{integration['id']}/rotate-secret", json={"overlap_seconds": 0}, headers=auth
    )
    assert rotated.status_code == 200, rotated.json
    assert post_signal(client, integration | {"secret": rotated.json["secret"]}).status_code == 200
    assert post_signal(client, integration).status_code == 401  # the old one, without an overlap


def test_verify_answers_like_the_standard_webhooks_library():
    """One HMAC per key, each signature compared in constant time: accepted and refused exactly as the
    reference implementation decides, for the current and the previous secret, several signatures,
    other versions, malformed headers, another id, timestamp or body, and a stale timestamp."""
    secrets = (
        "whsec_" + base64.b64encode(b"current secret").decode(),
        "whsec_" + base64.b64encode(b"previous").decode(),
    )
    keys = tuple(integrations.signing_key(secret) for secret in secrets)
    body = b'{"account_number": "CS-1", "type": "alarm"}'
    now = datetime.now(UTC)
    stale = datetime.fromtimestamp(now.timestamp() - 301, UTC)
    good, old = (Webhook(secret).sign("msg_1", now, body.decode()) for secret in secrets)
    other = Webhook("whsec_" + base64.b64encode(b"another").decode()).sign("msg_1", now, body.decode())

    def headers(signature, message_id="msg_1", when=now):
        return {
            "webhook-id": message_id,
            "webhook-timestamp": str(int(when.timestamp())),
            "webhook-signature": signature,
        }

    def library(body, headers):
        for secret in secrets:
            try:
                Webhook(secret).verify(body, headers, json_parse=False)
                return True
            except (WebhookVerificationError, ValueError):
                continue
        return False

    cases = (
        [
            (body, headers(signature))
            for signature in (
                good,
                old,
                f"{other} {good}",
                f"v2,abc {old}",
                other,
                good.replace("v1,", "v2,"),
                "v1",  # no comma
                f"v1,{good[3:]},x {good}",  # a malformed one first refuses the rest, as the library does
                f"v1,*** {good}",  # no base64 characters at all: decodes to nothing, the next one matches
                good[:-6] + "AAAAA=",
                f"v1,{good[3:]}=",  # padding ignored
            )
        ]
        + [
            (body, headers(good, message_id="msg_2")),
            (body, headers(good, when=datetime.fromtimestamp(now.timestamp() + 1, UTC))),
            (body + b" ", headers(good)),
            (body, headers(Webhook(secrets[0]).sign("msg_1", stale, body.decode()), when=stale)),
        ]
    )
    answers = []
    for case_body, case_headers in cases:
        try:
            ours = integrations.verify(keys, case_body, case_headers) == "msg_1"
        except integrations.Problem as problem:
            assert problem.status == 401
            ours = False
        assert ours == library(case_body, case_headers), case_headers
        answers.append(ours)
    assert [i for i, accepted in enumerate(answers) if accepted] == [0, 1, 2, 3, 8, 10]
    with pytest.raises(integrations.Problem, match="5-minute"):
        integrations.verify(keys, body, cases[-1][1])


def test_a_group_waits_for_the_requests_still_being_verified(db):
    """While a request is verifying its message, the group being gathered waits for it (bounded by the
    window): both messages go in one call; a request refused meanwhile lets the group go at once."""
    groups: list[list[str]] = []
    intake = integrations.Intake(
        db,
        integrations.DatabaseRateLimiter(db),
        lambda station, request_id, items: groups.append([i["message_id"] for i in items]) or [7] * len(items),
        window=30.0,
    )

    def message(message_id: str) -> integrations.Message:
        return integrations.Message(1, "S", 6000, f"{message_id}-{uuid.uuid4().hex}", {"message_id": message_id})

    entered, go, answers = threading.Event(), threading.Event(), []

    def verifying(refused: bool):
        try:
            with intake.arriving() as submit:
                entered.set()
                go.wait()
                if refused:
                    raise integrations.refused("no")
                answers.append(submit(message("late")))
        except Exception as error:
            answers.append(type(error).__name__)

    for refused in (False, True):
        entered.clear(), go.clear()
        slow = threading.Thread(target=verifying, args=(refused,))
        slow.start()
        entered.wait()
        first = threading.Thread(target=lambda: answers.append(intake.submit(message("early"))))
        first.start()
        with intake._ready:  # queued, and held: the slow request is still on its way
            assert intake._ready.wait_for(lambda: len(intake._queue) == 1, timeout=30)
        go.set()
        slow.join(), first.join()
    assert groups == [["early", "late"], ["early"]]
    assert sorted(map(str, answers)) == ["7", "7", "7", "Problem"]


@pytest.mark.parametrize(("content_type", "status"), [("application/json", 400), ("text/plain", 415)])
def test_a_signed_body_nested_past_the_parsers_depth_is_refused_not_a_500(client, auth, station, content_type, status):
    """The shared guard judges a JSON body's depth before the intake parses it; another type never gets parsed."""
    integration = create_integration(client, auth)
    body = "[" * 5000 + "]" * 5000
    now = datetime.now(UTC)
    headers = {
        "webhook-id": "msg_deep",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(integration["secret"]).sign("msg_deep", now, body),
        "Content-Type": content_type,
    }
    response = client.post(f"/api/v1/integrations/{integration['id']}/signals", data=body, headers=headers)
    assert response.status_code == status, response.get_data(as_text=True)
    assert station.groups == []
