"""Checks every service's unit suite runs against its own service: ops endpoints, the identity
requirement, its worker's queue, and migrations that match the models.

A suite collects them with ``from vigil_shared.service_checks import *`` in one of its test modules;
they take the service from the ``service_program`` fixture (see :mod:`vigil_shared.pytest_plugin`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlalchemy import MetaData

from .messaging.contracts import handle_event_task
from .testing import TestDatabases, assert_migrations_round_trip

# ``api`` is pytest_plugin's ApiClient, typed Any: the two are sibling layers that never import each other.
if TYPE_CHECKING:
    from .runtime import ServiceProgram
    from .service import ServiceRuntime

__all__ = [
    "test_healthz_answers_without_identity",
    "test_web_readyz_checks_the_database_and_workers_the_broker_too",
    "test_api_paths_need_a_gateway_identity",
    "test_worker_consumes_its_own_queue",
    "test_migrations_match_the_models_and_go_down_and_up_again",
]


def test_healthz_answers_without_identity(api: Any) -> None:
    response = api.as_(None).get("/healthz")
    assert response.status_code == 200 and response.json["status"] == "ok"


def test_web_readyz_checks_the_database_and_workers_the_broker_too(api: Any, runtime: ServiceRuntime) -> None:
    """The web process writes its events to the outbox; the broker is the relay's and the worker's."""
    response = api.as_(None).get("/readyz")
    assert response.status_code == 200
    assert response.json["checks"] == {"database": {"status": "ok"}}
    assert set(runtime.ready_checks()) == {"database", "broker"}  # the worker's, relay's and beat's /readyz


def test_api_paths_need_a_gateway_identity(api: Any) -> None:
    anonymous = api.as_(None)
    for response in (anonymous.get("/api/v1/anything"), anonymous.post("/api/v1/anything/1", json={})):
        assert response.status_code == 401
        assert response.headers["Content-Type"] == "application/problem+json"
        assert response.json["status"] == 401 and response.headers["X-Request-ID"]
    assert api.get("/api/v1/anything").status_code == 404


def test_worker_consumes_its_own_queue(service_program: ServiceProgram, runtime: ServiceRuntime) -> None:
    service_program.register_tasks(runtime)
    assert handle_event_task(service_program.name) in runtime.celery.tasks


def test_migrations_match_the_models_and_go_down_and_up_again(
    service_program: ServiceProgram, service_metadata: MetaData, test_databases: TestDatabases
) -> None:
    url = test_databases.url_for(f"{service_program.name}_migrations")
    assert_migrations_round_trip(service_program.package, service_metadata, url)
