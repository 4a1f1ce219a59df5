"""Events a worker can never apply: dead letters after one attempt, shown, retried and discarded through the gateway.

Nothing the public API does produces such an event, so the test puts two on the property
service's queue itself, as a producer with a bug (or a newer contract version) would.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from conftest import assert_problem

from vigil_shared.config import Settings
from vigil_shared.messaging.celery_app import make_celery, send_to_queue
from vigil_shared.messaging.contracts import handle_event_task

OPS = "/api/v1/ops/property/dead-letters"


def customer_event(version: int, data: dict) -> dict:
    return {
        "id": str(uuid.uuid4()),
        "type": "customer.created",
        "version": version,
        "source": "customer",
        "occurred_at": datetime.now(UTC).isoformat(),
        "request_id": f"e2e-dead-{uuid.uuid4().hex[:8]}",
        "data": data,
    }


def send_to_property_worker(stack, monkeypatch, *messages: dict) -> None:
    for key, value in stack.env.items():
        monkeypatch.setenv(key, value)
    settings = Settings.from_env("property")
    celery = make_celery(settings)
    for message in messages:
        send_to_queue(
            celery,
            handle_event_task("property"),
            settings.queue_name(),
            [message],
            headers={"request_id": message["request_id"]},
        )


def test_an_event_the_worker_can_never_apply_is_a_dead_letter_operators_retry_or_discard(
    stack, gateway, gateway_as, monkeypatch
):
    newer = customer_event(99, {"customer_id": 1})  # a version this worker does not know
    invalid = customer_event(1, {"customer_id": "not a number"})
    send_to_property_worker(stack, monkeypatch, newer, invalid)

    def letter(event: dict) -> dict:
        return gateway.wait_for(
            lambda: (r := gateway.get(f"{OPS}/{event['id']}")).ok and r.json(),
            what=f"event {event['id']} to become a dead letter",
        )

    unknown, broken = letter(newer), letter(invalid)
    assert unknown["error_class"].endswith("UnknownContract") and unknown["version"] == 99
    assert broken["error_class"].endswith("ValidationError") and "customer_id" in broken["error_message"]
    assert "not a number" not in broken["error_message"], "an error never repeats a payload value"
    for found, sent in ((unknown, newer), (broken, invalid)):
        assert found["attempts"] == 1, "a failure that repeating cannot fix is not retried"
        assert (found["type"], found["source"], found["request_id"]) == (
            "customer.created",
            "customer",
            sent["request_id"],
        )
    listed = gateway.get(OPS, params={"type": "customer.created", "per_page": 100}).json()
    assert {newer["id"], invalid["id"]} <= {item["event_id"] for item in listed["items"]}
    assert not any("data" in item or "message" in item for item in listed["items"])

    retried = gateway.post(f"{OPS}/{newer['id']}/retry")
    assert retried.status_code == 202 and retried.json()["retried_at"]
    again = gateway.wait_for(
        lambda: (r := gateway.get(f"{OPS}/{newer['id']}").json())["attempts"] == 2 and r,
        what="the retried event to fail again",
    )
    assert again["retried_at"] is None and again["error_class"] == unknown["error_class"]

    clerk = gateway_as(["properties.view"], everywhere=True)
    assert_problem(clerk.get(OPS), 403)
    assert_problem(clerk.delete(f"{OPS}/{invalid['id']}"), 403)
    assert_problem(clerk.post(f"{OPS}/{invalid['id']}/retry"), 403)
    for event in (newer, invalid):
        assert gateway.delete(f"{OPS}/{event['id']}").status_code == 204
        assert_problem(gateway.get(f"{OPS}/{event['id']}"), 404)
    assert_problem(gateway.post(f"{OPS}/{newer['id']}/retry"), 404)


def test_the_dead_letter_operations_are_documented(gateway):
    paths = gateway.get("/api/v1/openapi.json").json()["paths"]
    for service in ("customer", "property", "billing", "credit"):
        base = f"/api/v1/ops/{service}/dead-letters"
        assert set(paths[base]) >= {"get"}
        assert set(paths[base + "/{event_id}"]) >= {"get", "delete"}
        retry = paths[base + "/{event_id}/retry"]["post"]
        assert retry["x-vigil-permission"] == "ops.manage" and {"202", "404", "409", "503"} <= set(retry["responses"])
