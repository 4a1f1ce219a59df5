"""Test support every service's suite uses: a real database per run, signed identities, clean tables.

Backend choice, made once per test run and printed in pytest's header:
- ``VIGIL_TEST_BACKEND=postgres`` or ``embedded`` forces one;
- otherwise PostgreSQL is used when ``VIGIL_TEST_POSTGRES_URL`` (default
  ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``) answers, SQLite files otherwise.
Each run gets fresh databases, dropped afterwards.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlparse

from sqlalchemy import Engine, MetaData, create_engine, text
from sqlalchemy.engine import make_url

from .db import Database
from .identity import Identity, sign_identity
from .messaging.contracts import message
from .permissions import GLOBAL_PERMISSIONS, LOCATION_PERMISSIONS

TEST_SECRET = "test-internal-secret-0123456789abcdef"
HOME_LOCATION, OTHER_LOCATION = 1, 2
ADMIN = Identity(
    subject="1",
    username="admin",
    permissions=GLOBAL_PERMISSIONS,
    locations={HOME_LOCATION: LOCATION_PERMISSIONS, OTHER_LOCATION: LOCATION_PERMISSIONS},
)


def incoming_event(
    event_type: str, data: dict[str, Any], *, source: str, version: int = 1, request_id: str | None = None
) -> dict[str, Any]:
    """An event in its wire form as a consumer receives it from ``source``: a new id, occurring now."""
    event_id, now = str(uuid.uuid4()), datetime.now(UTC)
    return message(event_id, event_type, version, now, data, source=source, request_id=request_id)


def identity_with(*permissions: str, locations: Iterable[int] = (HOME_LOCATION,), username: str = "clerk") -> Identity:
    """A user holding exactly ``permissions``: global ones company-wide, the others at ``locations``."""
    global_perms = frozenset(p for p in permissions if p in GLOBAL_PERMISSIONS)
    located = frozenset(p for p in permissions if p in LOCATION_PERMISSIONS)
    unknown = set(permissions) - global_perms - located
    assert not unknown, f"not in the catalog: {unknown}"
    return Identity(
        subject=f"user:{username}",
        username=username,
        permissions=global_perms,
        locations={loc: located for loc in locations} if located else {},
    )


def _reachable(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def postgres_admin_url() -> str:
    return os.environ.get("VIGIL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def rabbitmq_url() -> str:
    return os.environ.get("VIGIL_TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672//")


def _url_reachable(url: str) -> bool:
    parsed = urlparse(url.replace("postgresql+psycopg", "postgresql"))
    return _reachable(parsed.hostname or "127.0.0.1", parsed.port or 5432)


def choose_backend() -> str:
    """``postgres`` (PostgreSQL + RabbitMQ) when reachable or forced, ``embedded`` otherwise."""
    forced = os.environ.get("VIGIL_TEST_BACKEND", "auto")
    if forced in ("postgres", "embedded"):
        return forced
    if _url_reachable(postgres_admin_url()) and _url_reachable(rabbitmq_url().replace("amqp", "http", 1)):
        return "postgres"
    return "embedded"


def describe_backend(backend: str) -> str:
    forced = os.environ.get("VIGIL_TEST_BACKEND") in ("postgres", "embedded")
    if backend == "postgres":
        return "PostgreSQL (fresh databases per run)" + (" [forced]" if forced else "")
    reason = "forced by VIGIL_TEST_BACKEND" if forced else "PostgreSQL/RabbitMQ not reachable"
    return f"the embedded default, SQLite ({reason})"


def _postgres_can_login() -> bool:
    try:
        engine = create_engine(postgres_admin_url())
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return True
    except Exception:  # noqa: BLE001 - any failure means "not usable"
        return False


@dataclass
class TestDatabases:
    """Creates fresh databases for one test run and drops them at the end."""

    __test__ = False  # a helper, not a pytest test class

    backend: str
    tmp_dir: str
    run_id: str = uuid.uuid4().hex[:10]

    def __post_init__(self) -> None:
        self.created: list[str] = []
        if self.backend == "postgres" and not _postgres_can_login():
            raise RuntimeError(f"PostgreSQL at {postgres_admin_url()} is reachable but refuses to log in")

    def url_for(self, name: str) -> str:
        if self.backend == "embedded":
            return f"sqlite:///{os.path.join(self.tmp_dir, name + '.db')}"
        db_name = f"vigil_t{self.run_id}_{name}"
        engine = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{db_name}"'))
        engine.dispose()
        self.created.append(db_name)
        return str(make_url(postgres_admin_url()).set(database=db_name).render_as_string(hide_password=False))

    def drop_all(self) -> None:
        if not self.created:
            return
        engine = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            for db_name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{db_name}" WITH (FORCE)'))
        engine.dispose()
        self.created.clear()


class HttpVerbs:
    """``get``/``post``/``put``/``patch``/``delete`` of a client whose ``request(method, path, **kwargs)`` sends."""

    def request(self, method: str, path: str, **kwargs: Any) -> Any:
        raise NotImplementedError

    def get(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> Any:
        return self.request("PUT", path, **kwargs)

    def patch(self, path: str, **kwargs: Any) -> Any:
        return self.request("PATCH", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.request("DELETE", path, **kwargs)


UNKNOWN_ID = 2_000_000_000  # within every id column's range, and never handed out to a test
SAME_PROBLEM = ("status", "type", "title", "detail", "errors")  # all a problem says but what differs per request


def assert_hidden(hidden: Any, unknown: Any, status: int = 404) -> dict[str, Any]:
    """A record outside the caller's rights answers exactly what an id that names nothing answers
    (``unknown``: the same request with an unused id), so an id cannot probe which records exist.

    Takes Flask test responses and ``requests`` responses alike; returns the hidden one's body."""
    bodies = []
    for response in (hidden, unknown):
        text = response.text if hasattr(response, "text") else response.get_data(as_text=True)
        assert response.status_code == status, f"{response.status_code}: {text}"
        assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
        bodies.append(response.json() if callable(response.json) else response.json)
    body, missing = bodies
    assert body["status"] == status and body["type"] and body["title"], body
    assert {k: body.get(k) for k in SAME_PROBLEM} == {k: missing.get(k) for k in SAME_PROBLEM}, (body, missing)
    assert "permission" not in body, body
    return dict(body)


def unknown_path(path: str, record_id: object) -> str:
    """``path`` with the segment naming ``record_id`` replaced by :data:`UNKNOWN_ID`."""
    return "/".join(str(UNKNOWN_ID) if part == str(record_id) else part for part in path.split("/"))


def identity_headers(identity: Identity = ADMIN, secret: str = TEST_SECRET) -> dict[str, str]:
    from .identity import IDENTITY_HEADER

    return {IDENTITY_HEADER: sign_identity(identity, secret)}


@contextmanager
def clean_tables(db: Database, metadata: MetaData, keep: frozenset[str] = frozenset()) -> Iterator[None]:
    """Empties every table (but ``keep``: append-only ones) after a test so the next starts from nothing."""
    try:
        yield
    finally:
        with db.transaction() as session:
            for table in reversed(metadata.sorted_tables):
                if table.name not in keep:
                    session.execute(table.delete())


def assert_migrations_round_trip(package: str, metadata: MetaData, url: str) -> None:
    """Migrations create exactly the models' tables, go down to nothing and up again cleanly."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from sqlalchemy import inspect

    from . import migrations
    from .db import build_engine

    tables = set(metadata.tables) | {"alembic_version"}
    engine = build_engine(url)
    try:
        migrations.upgrade(package, url)
        assert_ids_never_reused(engine, metadata)
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == tables
            drift = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
            assert drift == [], f"models and migrations differ: {drift}"
        migrations.downgrade(package, url, "base")
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == {"alembic_version"}
        migrations.upgrade(package, url)
        assert_ids_never_reused(engine, metadata)
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == tables
    finally:
        engine.dispose()


@contextmanager
def migrated_over(
    package: str, url: str, revision: str, rows: Iterable[tuple[str, dict[str, Any]]]
) -> Iterator[Engine]:
    """The database at ``url`` at ``revision``, given ``rows`` (``(INSERT statement, parameters)``), then
    upgraded to the head: what the migrations since do to data that existed before them."""
    from . import migrations
    from .db import build_engine

    migrations.upgrade(package, url, revision)
    engine = build_engine(url)
    try:
        with engine.begin() as conn:
            for statement, params in rows:
                conn.execute(text(statement), params)
        migrations.upgrade(package, url)
        yield engine
    finally:
        engine.dispose()


def assert_ids_never_reused(engine: Engine, metadata: MetaData) -> None:
    """Every table with a generated integer id was created so that no id is ever handed out twice.

    On SQLite that takes ``AUTOINCREMENT`` in the table's definition (``db.never_reuse_ids``);
    PostgreSQL's sequences never go back, so there is nothing to check there.
    """
    if engine.dialect.name != "sqlite":
        return
    with engine.connect() as conn:
        tables = conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type = 'table'").all()
    definitions: dict[str, str] = {name: sql for name, sql in tables}
    missing = sorted(
        table.name
        for table in metadata.sorted_tables
        if table.autoincrement_column is not None and "AUTOINCREMENT" not in definitions[table.name]
    )
    assert not missing, f"tables that would hand a deleted row's id to the next one: {missing}"


class FakeCustomerService:
    """Stands in for a service's ``customer_client.lookup_customer`` and records which ids it was asked
    about: ``customers`` maps an id to its :class:`~vigil_shared.customer_replica.CustomerFacts`, or to
    its location id alone; an id it does not hold is unknown (404). ``failure`` is raised when set."""

    def __init__(self) -> None:
        self.asked: list[int] = []
        self.customers: dict[int, Any] = {}
        self.failure: Exception | None = None

    @classmethod
    def installed(cls, monkeypatch: Any, customer_client: Any) -> FakeCustomerService:
        """A new stand-in, patched in as ``customer_client.lookup_customer`` for the test."""
        fake = cls()
        monkeypatch.setattr(customer_client, "lookup_customer", fake)
        return fake

    def __call__(self, customer_id: int) -> Any:
        from .customer_replica import CustomerFacts  # here: tools/run_tests.py imports this module, not the web layer

        self.asked.append(customer_id)
        if self.failure is not None:
            raise self.failure
        if customer_id not in self.customers:
            return None
        found = self.customers[customer_id]
        return found if isinstance(found, CustomerFacts) else CustomerFacts(customer_id, found)


def add_known_customer(
    session: Any,
    model: Any,
    customer_service: Any,
    customer_id: int,
    location_id: int | None = 1,
    deleted: bool = False,
    **facts: Any,
) -> None:
    """Puts a customer in a service's replica table ``model`` (with the ``facts`` it keeps, see
    :class:`~vigil_shared.customer_replica.CustomerFacts`); a live one also exists in the stand-in
    ``customer_service`` (a :class:`FakeCustomerService`), which a create asks to confirm the replica."""
    from .customer_replica import CustomerFacts  # as in FakeCustomerService

    session.add(model(customer_id=customer_id, location_id=location_id, deleted=deleted, **facts))
    session.commit()
    if not deleted and isinstance(customer_service, FakeCustomerService):
        customer_service.customers.setdefault(customer_id, CustomerFacts(customer_id, location_id, **facts))
