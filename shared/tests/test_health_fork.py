"""Readiness checks and ``fork``: a worker's parent answers ``/readyz`` from a thread while Celery's
prefork pool forks its children, and a child must never start with a lock a check holds."""

from __future__ import annotations

import os
import threading
import time

import pytest

from vigil_shared.health import run_checks

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


def _fork_and_take(lock: threading.Lock) -> int:
    """Forks; the child tries ``lock`` as its first task would. Returns the child's exit code."""
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child: exit code 0 when it got the lock
        os._exit(0 if lock.acquire(timeout=3) else 1)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def test_a_fork_waits_for_a_running_check_so_the_child_never_inherits_its_locks():
    library_lock = threading.Lock()  # stands for a pool's, libpq's or a broker connection's mutex
    inside = threading.Event()

    def database_check() -> None:
        with library_lock:
            inside.set()
            time.sleep(0.5)

    probe = threading.Thread(target=run_checks, args=({"database": database_check},))
    probe.start()
    try:
        assert inside.wait(5)
        assert _fork_and_take(library_lock) == 0, "the child inherited a lock the readiness check held"
    finally:
        probe.join(10)


def test_checks_run_again_after_a_fork():
    assert _fork_and_take(threading.Lock()) == 0
    report, ready = run_checks({"database": lambda: None})
    assert ready and report == {"database": {"status": "ok"}}
