"""The end-to-end suite: the whole of Vigil started as real processes, driven over HTTP only.

On PostgreSQL + RabbitMQ when reachable (fresh databases and queues per run, removed afterwards),
on the embedded defaults (SQLite databases + the SQLite broker in a temporary var/) otherwise.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import time
import uuid

import pytest
import requests
from sqlalchemy.engine import make_url

from vigil_runner.stack import Stack, is_ready
from vigil_shared.config import PROCESS_NAMES, SERVICES
from vigil_shared.testing import (  # noqa: F401 - e2e files import the shared assertions from here
    UNKNOWN_ID,
    HttpVerbs,
    TestDatabases,
    assert_hidden,
    choose_backend,
    postgres_admin_url,
    rabbitmq_url,
    unknown_path,
)

BACKEND = choose_backend()


def pytest_report_header(config):
    if BACKEND == "postgres":
        return "vigil e2e: whole system as processes on PostgreSQL + RabbitMQ"
    return "vigil e2e: whole system as processes on the embedded defaults (SQLite + the SQLite broker)"


def _delete_queues(prefix: str) -> None:
    from kombu import Connection

    with Connection(rabbitmq_url(), connect_timeout=5) as conn:
        channel = conn.channel()
        for name in SERVICES:
            try:
                channel.queue_delete(f"{prefix}.{name}")
            except Exception:  # noqa: BLE001 - a queue never declared is fine
                channel = conn.channel()


@contextlib.contextmanager
def running_stack(var_dir, backend: str = BACKEND):
    """A whole Vigil stack on fresh databases and queues, stopped and removed on exit.

    The session's ``stack`` is one; a suite that must not share state with the others (the
    schemathesis run, which signs in wrongly on purpose and edits users) starts its own, on
    ``backend`` (the suite's by default).
    """
    overrides = {
        "VIGIL_VAR_DIR": str(var_dir),
        "VIGIL_ADMIN_USERNAME": "admin",
        "VIGIL_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        "VIGIL_LOG_LEVEL": "INFO",
        "VIGIL_RELAY_INTERVAL": "0.1",
        # cheap Argon2id: sign-ins are many here; the gateway unit suite checks the production ones
        "VIGIL_PASSWORD_HASHING": "fast-for-tests",
        # webhooks: local receivers are allowed here only, and retries come seconds apart, not hours
        "VIGIL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128",
        "VIGIL_WEBHOOK_RETRY_SCHEDULE": "0.5,1,1,2,2",
        "VIGIL_WEBHOOK_SWEEP_INTERVAL": "0.2",
    }
    with backend_settings(backend, var_dir) as settings:
        running = Stack.from_environment(overrides | settings, dynamic_ports=True, inherit_vigil_settings=False)
        try:
            running.prepare()
            running.start()
            running.wait_ready(timeout=180)
            yield running
        finally:
            running.stop()


@contextlib.contextmanager
def backend_settings(backend: str, var_dir):
    """The settings that put a stack on ``backend``: fresh PostgreSQL databases and RabbitMQ queues
    (removed on exit), or nothing for the embedded default (SQLite and the SQLite broker in var/)."""
    databases = TestDatabases(backend, str(var_dir), run_id=uuid.uuid4().hex[:10])
    settings: dict[str, str] = {}
    prefix = None
    try:
        if backend == "postgres":
            for name in PROCESS_NAMES:
                settings[f"VIGIL_{name.upper()}_DATABASE_URL"] = databases.url_for(name)
            prefix = f"vigil-e2e-{uuid.uuid4().hex[:8]}"
            settings.update(VIGIL_BROKER_URL=rabbitmq_url(), VIGIL_QUEUE_PREFIX=prefix)
        yield settings
    finally:
        databases.drop_all()
        if prefix:
            _delete_queues(prefix)


@pytest.fixture(scope="session")
def stack(tmp_path_factory):
    with running_stack(tmp_path_factory.mktemp("var")) as running:
        DIAGNOSTICS.append(lambda: stack_diagnostics(running))
        try:
            yield running
        finally:
            DIAGNOSTICS.clear()


# The backends a suite that must hold on every backend runs on: the embedded default always, and
# PostgreSQL + RabbitMQ too when they are reachable.
EVERY_BACKEND = ["embedded", "postgres"] if BACKEND == "postgres" else ["embedded"]


# What a timed-out wait reports besides its own message: the tail of the workers' and relays' logs
# and, on PostgreSQL, every session of the stack that is not idle (a lock wait shows there).
DIAGNOSTICS: list = []


def stack_diagnostics(running: Stack, lines: int = 25) -> str:
    parts = []
    for log in sorted(running.log_dir.glob("*.log")):
        if "worker" in log.name or "relay" in log.name:
            tail = log.read_text(errors="replace").splitlines()[-lines:]
            parts.append(f"--- {log.name} (last {len(tail)} lines)\n" + "\n".join(tail))
    databases = sorted(
        {
            make_url(url).database
            for name, url in running.env.items()
            if name.endswith("_DATABASE_URL") and url.startswith("postgresql")
        }
    )
    if databases:
        from sqlalchemy import create_engine, text

        engine = create_engine(postgres_admin_url())
        try:
            with engine.connect() as conn:
                rows = conn.execute(
                    text(
                        "SELECT datname, pid, state, wait_event_type, wait_event, now() - xact_start AS in_xact,"
                        " left(query, 200) AS query FROM pg_stat_activity"
                        " WHERE datname = ANY(:names) AND state <> 'idle'"
                    ),
                    {"names": databases},
                ).all()
        finally:
            engine.dispose()
        parts.append("--- PostgreSQL sessions not idle\n" + "\n".join(str(tuple(row)) for row in rows))
    return "\n".join(parts)


def pytest_collection_modifyitems(config, items):
    """Tests marked ``run_last(n)`` run after all others, lowest ``n`` first (the at-rest scan is last)."""

    def rank(item):
        marker = item.get_closest_marker("run_last")
        return (marker.args[0] if marker and marker.args else 1) if marker else 0

    items.sort(key=rank)  # stable: the order within each rank is kept


def pytest_configure(config):
    config.addinivalue_line("markers", "run_last(n): run after every unmarked test, lowest n first")


class Gateway(HttpVerbs):
    """A caller of the public API."""

    def __init__(self, base_url: str, token: str | None = None, *, credentials: dict | None = None):
        self.base_url = base_url
        self.http = requests.Session()
        if token:
            self.http.headers["Authorization"] = f"Bearer {token}"
        # A client kept for the whole session signs in again before its access token expires: a run
        # on a loaded machine outlasts the token's 15 minutes.
        self.credentials = credentials
        self.renew_at = 0.0

    def url(self, path: str) -> str:
        return f"{self.base_url}{path}"

    def request(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        if self.credentials is not None and time.monotonic() >= self.renew_at:
            self.sign_in()
        return self.http.request(method, self.url(path), **kwargs)

    def sign_in(self) -> None:
        assert self.credentials is not None
        response = self.http.post(self.url("/api/v1/auth/token"), json=self.credentials, timeout=15)
        assert response.status_code == 200, response.text
        body = response.json()
        self.http.headers["Authorization"] = f"Bearer {body['access_token']}"
        self.renew_at = time.monotonic() + body["expires_in"] / 2

    def wait_for(self, check, timeout: float = 30, interval: float = 0.1, what: str = "condition"):
        """Polls ``check`` (returning a truthy value when done) until the event has been processed."""
        deadline = time.monotonic() + timeout
        while True:
            result = check()
            if result:
                return result
            if time.monotonic() > deadline:
                report = "\n".join(diagnose() for diagnose in DIAGNOSTICS)
                raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{report}")
            time.sleep(interval)


@pytest.fixture(scope="session")
def admin_password(stack):
    return stack.env["VIGIL_ADMIN_PASSWORD"]


@pytest.fixture(scope="session")
def anonymous(stack):
    return Gateway(stack.gateway_url)


@pytest.fixture(scope="session")
def gateway(stack, admin_password):
    admin = Gateway(stack.gateway_url, credentials={"username": "admin", "password": admin_password})
    admin.sign_in()
    return admin


def assert_problem(response, status: int) -> dict:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    assert response.headers["Content-Type"].startswith("application/problem+json"), response.headers
    body = response.json()
    assert body["status"] == status and body["title"] and body["type"]
    assert "Traceback" not in response.text
    return body


# --- callers with chosen rights -----------------------------------------------------------------


@pytest.fixture(scope="session")
def locations(gateway) -> dict[str, int]:
    """Two office locations: ``home`` (where the fixtures' records live) and ``other``."""
    ids = {}
    for key, name in (("home", "E2E Home Office"), ("other", "E2E Other Office")):
        response = gateway.post("/api/v1/locations", json={"name": name})
        assert response.status_code == 201, response.text
        ids[key] = response.json()["id"]
    return ids


@pytest.fixture(scope="session")
def gateway_as(stack, gateway):
    """``gateway_as(["customers.view"], [location_id])``: a signed-in caller holding exactly those rights."""
    made: dict[tuple, Gateway] = {}

    def make(permissions, location_ids=(), *, everywhere: bool = False) -> Gateway:
        key = (tuple(sorted(permissions)), tuple(sorted(location_ids)), everywhere)
        if key in made:
            return made[key]
        suffix = uuid.uuid4().hex[:8]
        role = gateway.post("/api/v1/roles", json={"name": f"e2e-role-{suffix}", "permissions": list(permissions)})
        assert role.status_code == 201, role.text
        grants = (
            [{"role_id": role.json()["id"], "location_id": None}]
            if everywhere
            else [{"role_id": role.json()["id"], "location_id": loc} for loc in location_ids]
        )
        if not grants and permissions:
            grants = [{"role_id": role.json()["id"], "location_id": None}]  # company-wide permissions only
        made[key] = signed_in_user(stack, gateway, f"e2e-{suffix}", grants)
        return made[key]

    return make


def signed_in_user(stack, gateway, username: str, grants: list[dict]) -> Gateway:
    """A new user holding ``grants`` (made by the admin ``gateway``), signed in."""
    password = secrets.token_urlsafe(16)
    user = gateway.post("/api/v1/users", json={"username": username, "password": password, "grants": grants})
    assert user.status_code == 201, user.text
    caller = Gateway(stack.gateway_url, credentials={"username": username, "password": password})
    caller.sign_in()
    return caller


_EXCHANGES = [e for e in range(230, 1000) if e % 100 != 11]  # real-looking, never an N11 service code


def unique_phone(area: str = "801") -> str:
    """A valid number no other record of the run is likely to share (7.5 million per area code), so
    a phone-based duplicate check never joins two tests' records."""
    n = uuid.uuid4().int
    return f"{area}-{_EXCHANGES[n % len(_EXCHANGES)]}-{(n >> 16) % 10_000:04d}"


def customer_body(location_id: int, **fields) -> dict:
    """A valid new customer (the record's required fields) at ``location_id``; ``fields`` override."""
    return {
        "kind": "customer",
        "first_name": "Dana",
        "last_name": "Reyes",
        "city": "Ottawa",
        "state": "ON",
        "primary_phone": "613-555-0100",
        "account_type": "Residential",
        "location_id": location_id,
    } | fields


def new_customer(gateway, location_id: int, first_name: str, last_name: str, **fields) -> dict:
    """A customer created through the gateway with a phone of its own, even if another looks alike."""
    response = gateway.post(
        "/api/v1/customers",
        params={"allow_duplicates": "true"},
        json=customer_body(
            location_id, first_name=first_name, last_name=last_name, primary_phone=unique_phone("613"), **fields
        ),
    )
    assert response.status_code == 201, response.text
    return response.json()


@contextlib.contextmanager
def process_stopped(stack, name: str):
    """The stack's process ``name`` stopped (SIGTERM) for the block, then started again and ready."""
    [process] = [p for p in stack.processes if p.name == name]
    os.killpg(process.popen.pid, signal.SIGTERM)
    process.popen.wait(20)
    try:
        yield process
    finally:
        restart(stack, process)


def restart(stack, process, wait_ready: bool = True) -> None:
    """Starts a stopped (or killed) process of the stack again as the runner did, logging to the same
    file; with ``wait_ready``, returns once it answers its readiness check."""
    log = open(process.log_path, "ab")  # noqa: SIM115 - handed to the child
    process.popen = subprocess.Popen(
        process.argv, env=stack.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    log.close()
    deadline = time.monotonic() + 60
    while wait_ready and not is_ready(process.ready_url):
        assert time.monotonic() < deadline, f"{process.name} did not come back"
        time.sleep(0.2)
