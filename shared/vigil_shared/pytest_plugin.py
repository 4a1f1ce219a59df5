"""pytest fixtures for one service's unit tests (each service's suite runs in its own pytest process).

A service's ``conftest.py`` enables this plugin and provides ``service_program`` (its tables'
metadata, ``service_metadata``, follows from it); it then gets ``app``, ``runtime``, ``session``,
``outbox`` (the events written) and ``api`` (a test client that sends a signed admin identity unless
told otherwise), on a fresh database per run and with every table emptied after each test. A service
that keeps a replica of the customers (``customer_client``, ``models.KnownCustomer``) also gets
``customer_service`` (a stand-in of the customer service) and ``known`` (customers in the replica).
``vigil_shared.service_checks`` holds the checks every service's suite runs.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, cast

import pytest
from flask import Flask
from sqlalchemy import MetaData, select
from sqlalchemy.orm import Session
from werkzeug.test import TestResponse

from . import migrations
from .config import Settings
from .crypto import generate_key
from .identity import Identity
from .testing import (
    ADMIN,
    TEST_SECRET,
    FakeCustomerService,
    HttpVerbs,
    TestDatabases,
    add_known_customer,
    choose_backend,
    clean_tables,
    describe_backend,
    identity_headers,
)

if TYPE_CHECKING:
    from .runtime import ServiceProgram
    from .service import ServiceRuntime

_BACKEND = choose_backend()


def pytest_report_header(config: pytest.Config) -> str:
    return f"vigil: unit tests on {describe_backend(_BACKEND)}"


@pytest.fixture(scope="session")
def test_databases(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestDatabases]:
    databases = TestDatabases(_BACKEND, str(tmp_path_factory.mktemp("db")))
    yield databases
    databases.drop_all()


@pytest.fixture(scope="session")
def service_metadata(service_program: ServiceProgram) -> MetaData:
    """The service's tables: the metadata its messaging tables are declared on, i.e. its models' ``Base``."""
    return cast(MetaData, service_program.messaging.OutboxEvent.metadata)


@pytest.fixture(scope="session")
def service_settings(
    service_program: ServiceProgram,
    test_databases: TestDatabases,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch_session: pytest.MonkeyPatch,
) -> Settings:
    monkeypatch_session.setenv("VIGIL_VAR_DIR", str(tmp_path_factory.mktemp("var")))
    url = test_databases.url_for(service_program.name)
    migrations.upgrade(service_program.package, url)
    return Settings.from_env(
        service_program.name,
        database_url=url,
        internal_secret=TEST_SECRET,
        broker_url="memory://",
        log_level="WARNING",
        encryption_keys=(generate_key(),),
        blind_index_key="test-blind-index-key",
    )


@pytest.fixture(scope="session")
def monkeypatch_session() -> Iterator[pytest.MonkeyPatch]:
    patcher = pytest.MonkeyPatch()
    yield patcher
    patcher.undo()


@pytest.fixture(scope="session")
def app(service_program: ServiceProgram, service_settings: Settings) -> Iterator[Flask]:
    app = service_program.create_app(service_settings)
    app.config["TESTING"] = True
    yield app
    app.extensions["vigil_runtime"].db.dispose()  # its pooled connections close before the run ends


@pytest.fixture
def runtime(app: Flask) -> ServiceRuntime:
    runtime: ServiceRuntime = app.extensions["vigil_runtime"]
    return runtime


@pytest.fixture(autouse=True)
def _empty_tables_after_test(request: pytest.FixtureRequest) -> Iterator[None]:
    if (
        "app" not in request.fixturenames
        and "runtime" not in request.fixturenames
        and "api" not in request.fixturenames
    ):
        yield
        return
    app = request.getfixturevalue("app")
    metadata = request.getfixturevalue("service_metadata")
    with clean_tables(app.extensions["vigil_runtime"].db, metadata):
        yield


@pytest.fixture
def session(runtime: ServiceRuntime) -> Iterator[Session]:
    with runtime.db.new_session() as session:
        yield session


class ApiClient(HttpVerbs):
    """Flask test client that signs the identity header like the gateway does."""

    def __init__(self, app: Flask, identity: Identity | None = ADMIN) -> None:
        self._client = app.test_client()
        self.identity = identity

    def as_(self, identity: Identity | None) -> ApiClient:
        return ApiClient(self._client.application, identity)

    def request(self, method: str, path: str, headers: dict[str, str] | None = None, **kwargs: Any) -> TestResponse:
        all_headers = identity_headers(self.identity) if self.identity else {}
        all_headers.update(headers or {})
        return self._client.open(path, method=method, headers=all_headers, **kwargs)

    open = request  # the Flask test client's name for it


@pytest.fixture
def api(app: Flask) -> ApiClient:
    return ApiClient(app)


@pytest.fixture
def customer_service(monkeypatch: pytest.MonkeyPatch, service_program: ServiceProgram) -> FakeCustomerService:
    """The customer service, a stand-in patched in as the service's ``customer_client.lookup_customer``
    (a service that keeps a replica of the customers: :mod:`vigil_shared.customer_replica`)."""
    client = importlib.import_module(f"{service_program.package}.customer_client")
    return FakeCustomerService.installed(monkeypatch, client)


@pytest.fixture
def known(
    session: Session, customer_service: FakeCustomerService, service_program: ServiceProgram
) -> Callable[..., None]:
    """Puts customers in the service's replica (its ``models.KnownCustomer``): ``known(7)`` (location 1),
    ``known(8, location_id=2)``, ``known(9, deleted=True)``, facts it keeps as keywords; a live one also
    exists in the stand-in customer service, which a create asks to confirm the replica."""
    model = importlib.import_module(f"{service_program.package}.models").KnownCustomer

    def add(customer_id: int, location_id: int | None = 1, deleted: bool = False, **facts: Any) -> None:
        add_known_customer(session, model, customer_service, customer_id, location_id, deleted, **facts)

    return add


@pytest.fixture
def outbox(session: Session, service_program: ServiceProgram) -> Callable[..., list[tuple[str, Any]]]:
    """The events written so far, as ``(type, data)`` pairs, oldest first (``outbox("x.y")``: of one type)."""
    event = service_program.messaging.OutboxEvent

    def read(event_type: str | None = None) -> list[tuple[str, Any]]:
        session.expire_all()
        rows = session.scalars(select(event).order_by(event.position)).all()
        return [(row.type, row.data) for row in rows if event_type is None or row.type == event_type]

    return read
