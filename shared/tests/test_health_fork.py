"""Readiness checks and ``fork``: a worker's parent answers ``/readyz`` from a thread while Celery's
prefork pool forks its children, and a child must never start with a lock a check holds."""

from __future__ import annotations

import importlib
import os
import signal
import sys
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


def test_a_fork_never_lands_in_an_import_a_check_started(tmp_path, monkeypatch):
    """What hung the workers' first tasks: the first ``/readyz`` builds the engine, which imports the
    SQLAlchemy dialect and psycopg; a fork in the middle left that module's import lock held in the
    child, whose first task then imported the same module and waited for ever (py-spy in the child:
    ``_ModuleLock.acquire`` under ``PGDialect_psycopg.import_dbapi``)."""
    (tmp_path / "vigil_slow_driver.py").write_text("import time\ntime.sleep(0.5)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "vigil_slow_driver", raising=False)
    importing = threading.Event()

    def database_check() -> None:
        importing.set()
        importlib.import_module("vigil_slow_driver")

    probe = threading.Thread(target=run_checks, args=({"database": database_check},))
    probe.start()
    try:
        assert importing.wait(5)
        time.sleep(0.1)  # inside the module's body, its import lock held
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child: killed by the alarm if the import never ends
            signal.signal(signal.SIGALRM, signal.SIG_DFL)
            signal.alarm(3)
            importlib.import_module("vigil_slow_driver")
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0, "the child waited for an import its parent's check began"
    finally:
        probe.join(10)
        sys.modules.pop("vigil_slow_driver", None)


def test_checks_run_again_after_a_fork():
    assert _fork_and_take(threading.Lock()) == 0
    report, ready = run_checks({"database": lambda: None})
    assert ready and report == {"database": {"status": "ok"}}
