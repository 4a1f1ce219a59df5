"""Health and readiness: ``/healthz`` (the process answers) and ``/readyz`` (it can do its work).

Web apps get both routes from :func:`add_health_routes`; workers and relays, which are not web
apps, serve the same answers from ``runtime.serve_health``. Both run the checks with
:func:`run_checks`, which never overlaps a ``fork`` of its process (:class:`ForkGuard`).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from flask import Flask, Response, jsonify

WEB_OPTIONAL_CHECKS = frozenset({"broker"})


def add_health_routes(
    app: Flask, checks: dict[str, Callable[[], None]], optional: frozenset[str] = WEB_OPTIONAL_CHECKS
) -> None:
    """``/healthz``: the process answers. ``/readyz``: it can serve requests (503 otherwise).

    A web process serves requests as long as its database answers: writes go to the outbox, which
    the relay publishes once the broker is back. The services and the gateway pass their database
    only (the broker's health is their relay's and worker's, and a web process loads no broker
    client: ``vigil_shared.service``); a failing ``optional`` check, should one be passed (the
    broker), leaves it ready and is reported in the body as ``degraded``. Workers and relays
    (``runtime.serve_health``) need every check, the broker included.
    """

    @app.get("/healthz")
    def healthz() -> Response:
        return jsonify(status="ok", process=app.name)

    @app.get("/readyz")
    def readyz() -> Response:
        report, ready = run_checks(checks, optional)
        degraded = any(entry["status"] == "degraded" for entry in report.values())
        response = jsonify(status=("degraded" if degraded else "ready") if ready else "unavailable", checks=report)
        response.status_code = 200 if ready else 503
        return response


# Seconds a fork waits for the readiness checks running in other threads to end. A check bounded by
# its own timeouts ends well within it; a stuck one (a database that never answers) must not stop the
# fork for good, so after it the fork goes ahead as it did before the guard.
FORK_WAIT_SECONDS = 10.0


class ForkGuard:
    """Keeps ``fork()`` and the readiness checks of other threads apart.

    A worker's parent answers ``/readyz`` from a thread (``runtime.serve_health``) while Celery's
    prefork pool forks its children from the main thread, at start and whenever it replaces one. A
    fork copies every lock as it is at that instant, and only the forking thread: a lock a check held
    (the database pool's mutex, libpq's and Kerberos' mutexes while it connects, a broker
    connection's) stays held in the child for ever, and the child's first task that needs it hangs
    until Celery's task time limit kills it. So a fork waits until no check runs (at most
    :data:`FORK_WAIT_SECONDS`), and a check does not start while a fork is under way; a child starts
    with no check running (it has no other thread).
    """

    def __init__(self, wait: float = FORK_WAIT_SECONDS) -> None:
        self.wait = wait
        self._reset()
        if hasattr(os, "register_at_fork"):  # POSIX; a process that cannot fork needs no guard
            os.register_at_fork(
                before=self._before_fork, after_in_parent=self._after_fork_in_parent, after_in_child=self._reset
            )

    def _reset(self) -> None:
        self._changed = threading.Condition(threading.Lock())
        self._running = 0
        self._forking = False

    @contextmanager
    def checking(self) -> Iterator[None]:
        """Around the checks: they start once no fork is under way, and a fork waits for them."""
        with self._changed:
            self._changed.wait_for(lambda: not self._forking, timeout=self.wait)
            self._running += 1
        try:
            yield
        finally:
            with self._changed:
                self._running -= 1
                self._changed.notify_all()

    def _before_fork(self) -> None:
        with self._changed:
            self._changed.wait_for(lambda: self._running == 0, timeout=self.wait)
            self._forking = True

    def _after_fork_in_parent(self) -> None:
        with self._changed:
            self._forking = False
            self._changed.notify_all()


FORK_GUARD = ForkGuard()


def run_checks(
    checks: dict[str, Callable[[], None]], optional: frozenset[str] = frozenset()
) -> tuple[dict[str, dict[str, str]], bool]:
    """Runs each check; ready unless a check not in ``optional`` fails (those report ``degraded``).

    Never while the process forks (:data:`FORK_GUARD`): a child must not inherit a lock a check holds.
    """
    with FORK_GUARD.checking():
        return _run_checks(checks, optional)


def _run_checks(
    checks: dict[str, Callable[[], None]], optional: frozenset[str]
) -> tuple[dict[str, dict[str, str]], bool]:
    report: dict[str, dict[str, str]] = {}
    ready = True
    for check_name, check in checks.items():
        try:
            check()
            report[check_name] = {"status": "ok"}
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure, by name only
            if check_name in optional:
                report[check_name] = {"status": "degraded", "error": type(exc).__name__}
            else:
                ready = False
                report[check_name] = {"status": "unavailable", "error": type(exc).__name__}
    return report, ready
