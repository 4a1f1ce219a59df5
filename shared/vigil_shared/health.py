"""Health and readiness: ``/healthz`` (the process answers) and ``/readyz`` (it can do its work).

Web apps get both routes from :func:`add_health_routes`; workers and relays, which are not web
apps, serve the same answers from ``runtime.serve_health``. Both run the checks with
:func:`run_checks`.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask, Response, jsonify

WEB_OPTIONAL_CHECKS = frozenset({"broker"})


def add_health_routes(
    app: Flask, checks: dict[str, Callable[[], None]], optional: frozenset[str] = WEB_OPTIONAL_CHECKS
) -> None:
    """``/healthz``: the process answers. ``/readyz``: it can serve requests (503 otherwise).

    A web process serves requests as long as its database answers: writes go to the outbox, which
    the relay publishes once the broker is back. So a failing ``optional`` check (the broker)
    leaves it ready and is reported in the body as ``degraded``; a load balancer keeps the API up.
    Workers and relays (``runtime.serve_health``) still need every check, the broker included.
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


def run_checks(
    checks: dict[str, Callable[[], None]], optional: frozenset[str] = frozenset()
) -> tuple[dict[str, dict[str, str]], bool]:
    """Runs each check; ready unless a check not in ``optional`` fails (those report ``degraded``)."""
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
