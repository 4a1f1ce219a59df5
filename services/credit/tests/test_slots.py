"""The concurrency cap on calls to ADT and the bureau, shared by every worker process through the database."""

import threading
import time
from datetime import timedelta

import pytest
from sqlalchemy import update

from vigil_credit import tasks
from vigil_credit.bureau import HttpBureau
from vigil_credit.models import OutboundSlot
from vigil_credit.slots import SharedSlots, SlotUnavailable
from vigil_shared.db import utcnow


def test_many_workers_never_hold_more_than_the_cap(runtime):
    # three SharedSlots are three worker processes (each its own view of the rows), eight threads each
    workers = [SharedSlots(runtime.db, "adt", cap=3, lease=30) for _ in range(3)]
    lock, busy, most, calls = threading.Lock(), [0], [0], [0]

    def call(slots: SharedSlots) -> None:
        for _ in range(3):
            with slots.hold():
                with lock:
                    busy[0] += 1
                    most[0] = max(most[0], busy[0])
                time.sleep(0.02)
                with lock:
                    busy[0] -= 1
                    calls[0] += 1

    threads = [threading.Thread(target=call, args=(w,)) for w in workers for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert calls[0] == 3 * 8 * 3
    assert most[0] == 3  # the cap was reached, never passed


def test_a_full_cap_makes_the_caller_wait_then_give_up(runtime):
    slots, other = (SharedSlots(runtime.db, "bureau", cap=1, lease=30, wait=0.3) for _ in range(2))
    with slots.hold():
        for waiter in (slots, other):  # a thread of the same process, and another process
            started = time.monotonic()
            with pytest.raises(SlotUnavailable), waiter.hold():
                pass
            assert time.monotonic() - started >= 0.3
    with other.hold() as slot:  # given back: free again
        assert slot == 0


def test_a_dead_holders_slot_frees_when_its_lease_ends(runtime):
    dying, other = (SharedSlots(runtime.db, "adt", cap=1, lease=30, wait=0.2) for _ in range(2))
    with dying.hold():
        with pytest.raises(SlotUnavailable), other.hold():
            pass
        # the holder "died": its lease is what keeps the slot taken, until it ends
        with runtime.db.transaction() as session:
            session.execute(update(OutboundSlot).values(expires_at=utcnow() - timedelta(seconds=1)))
        with other.hold() as slot:
            assert slot == 0


def test_a_lowered_cap_leaves_the_slots_above_it_unused(runtime):
    SharedSlots(runtime.db, "adt", cap=4, lease=30)._ensure_rows()
    lowered, other = (SharedSlots(runtime.db, "adt", cap=1, lease=30, wait=0.2) for _ in range(2))
    with lowered.hold() as slot:
        assert slot == 0
        with pytest.raises(SlotUnavailable), other.hold():
            pass


def test_the_adapter_holds_a_slot_per_request_not_while_it_backs_off(sandbox_bureau):
    url, _ = sandbox_bureau
    held: list[str] = []

    class Gate:
        def __enter__(self):
            held.append("in")

        def __exit__(self, *exc):
            held.append("out")

    slept: list[float] = []

    def sleep(seconds):
        assert held[-1] == "out"  # backing off holds no slot
        slept.append(seconds)

    http = HttpBureau(url, timeout=2.0, retries=2, backoff=0.01, sleep=sleep, gate=Gate)
    with pytest.raises(Exception, match="unavailable"):
        http.post("/adt/v1/prechecks", {"customer": {"ssn": "123-45-2003"}}, "gate-test-0001", "ADT PreCheck")
    assert held == ["in", "out"] * 3 and len(slept) == 2


class FakeTask:
    def __init__(self, retries):
        self.request = type("Request", (), {"retries": retries})()

    def retry(self, countdown):
        return RuntimeError(f"retry in {countdown}")


def test_a_task_that_keeps_failing_ends_with_its_reason():
    failed: list[str] = []

    def fail(reason):
        failed.append(reason)
        return "error"

    with pytest.raises(RuntimeError, match="retry in 4"):
        tasks.retry_or_fail(FakeTask(2), SlotUnavailable("full"), "ADT", fail)
    last = FakeTask(tasks.SUBJECT_RETRIES)
    assert tasks.retry_or_fail(last, SlotUnavailable("full"), "ADT", fail) == "error"
    assert tasks.retry_or_fail(last, KeyError("x"), "ADT", fail) == "error"
    assert failed == [
        "Too many requests were waiting for a free connection to ADT; try again later.",
        "The worker could not run it (KeyError).",
    ]
