"""The operations resource's bookkeeping: steps, progress, a repeated report counted once, failure."""

from conftest import operations

from vigil_shared import operations as ops
from vigil_shared.messaging.contracts import (
    ARCHIVE_PARTICIPANTS,
    SUBSCRIPTIONS,
    OperationStepDone,
    contract_of,
    new_event,
    parse_event,
)


def start(session, steps):
    return ops.start(
        session,
        operations,
        service="customer",
        kind="customer.archive",
        owner="user:1",
        target_type="customer",
        target_id=7,
        steps=steps,
    )


def test_an_operation_finishes_when_its_last_step_is_in_and_repeats_count_once(db):
    steps = [ops.Step("customer", "customer", 7), ops.Step("property", "customer", 7)]
    with db.transaction() as session:
        operation_id = start(session, steps).id
    assert ops.owner_of(operation_id) == "customer" and ops.owner_of("nonsense") is None
    with db.transaction() as session:
        assert ops.complete_step(session, operations, operation_id, steps[0].key, result={"archived": [7]})
        assert not ops.complete_step(session, operations, operation_id, steps[0].key)  # a repeat
        assert not ops.complete_step(session, operations, operation_id, "billing:customer:7")  # not a step
        operation = session.get(operations.Operation, operation_id)
        assert (operation.status, operation.steps_done, operation.steps_total) == ("running", 1, 2)
    with db.transaction() as session:
        assert ops.complete_step(session, operations, operation_id, steps[1].key, result={"cancelled": []})
        operation = session.get(operations.Operation, operation_id)
        body = ops.present(operation, ops.steps_of(session, operations, operation_id))
        assert body["status"] == "succeeded" and body["progress"] == {"done": 2, "total": 2}
        assert [s["result"] for s in body["steps"]] == [{"archived": [7]}, {"cancelled": []}]
        assert body["links"]["self"] == f"/api/v1/operations/{operation_id}"


def test_a_failed_step_fails_the_operation_and_no_step_means_done_at_once(db):
    with db.transaction() as session:
        operation = start(session, [ops.Step("property", "customer", 7)])
        ops.complete_step(session, operations, operation.id, "property:customer:7", error="boom")
        assert operation.status == "failed" and operation.finished_at is not None
        assert start(session, []).status == "succeeded"


def test_the_saga_contracts_round_trip_and_every_participant_subscribes():
    report = OperationStepDone(
        operation_id="customer-" + "a" * 32,
        participant="property",
        target_type="customer",
        target_id="7",
        result={"cancelled": [{"type": "appointment", "id": 3}]},
    )
    event = parse_event(new_event(report, source="property").to_message())
    assert event.payload == report and contract_of(OperationStepDone).type == "operation.step_done"
    for participant in ARCHIVE_PARTICIPANTS:
        assert {"customer.archive_requested", "customer.unarchive_requested"} <= SUBSCRIPTIONS[participant]
    assert "operation.step_done" in SUBSCRIPTIONS["customer"]
