"""What the benchmarks share: a Vigil of their own on free ports and its teardown, a service app
configured like the unit tests', and percentiles. Imported as ``benchkit`` (the benchmarks run from
this folder)."""

from __future__ import annotations

import os
import secrets
import shutil
import time
import uuid
from collections.abc import Callable
from typing import Any

from vigil_runner.stack import Stack
from vigil_shared.config import PROCESS_NAMES, Settings
from vigil_shared.crypto import generate_key
from vigil_shared.testing import TEST_SECRET, TestDatabases, choose_backend, rabbitmq_url

SERVICE_QUEUES = ("customer", "property", "billing", "credit")


def stack_overrides(var_dir: str, settings: dict[str, str] | None = None) -> dict[str, str]:
    """The settings every benchmark's Vigil starts with (an admin with a random password), then ``settings``."""
    return {
        "VIGIL_VAR_DIR": var_dir,
        "VIGIL_ADMIN_USERNAME": "admin",
        "VIGIL_ADMIN_PASSWORD": secrets.token_urlsafe(16),
        **(settings or {}),
    }


def on_postgres(overrides: dict[str, str], databases: TestDatabases) -> str:
    """Points every process at its own PostgreSQL database and at RabbitMQ under a fresh queue
    prefix (returned, so the queues can be deleted afterwards)."""
    for name in PROCESS_NAMES if databases.backend == "postgres" else ():
        overrides[f"VIGIL_{name.upper()}_DATABASE_URL"] = databases.url_for(name)
    prefix = f"vigil-bench-{uuid.uuid4().hex[:8]}"
    overrides.update(VIGIL_BROKER_URL=rabbitmq_url(), VIGIL_QUEUE_PREFIX=prefix)
    return prefix


def launch(overrides: dict[str, str]) -> Stack:
    """Every process of a Vigil configured by ``overrides`` alone, on free ports, once all are ready."""
    stack = Stack.from_environment(overrides, dynamic_ports=True, inherit_vigil_settings=False)
    stack.prepare()
    stack.start()
    stack.wait_ready(timeout=180)
    return stack


def start_stack(var_dir: str, settings: dict[str, str] | None = None) -> tuple[Stack, TestDatabases, str]:
    """A Vigil like the e2e suite's: PostgreSQL + RabbitMQ when they answer, the embedded defaults otherwise."""
    backend = choose_backend()
    overrides = stack_overrides(var_dir, settings)
    databases = TestDatabases(backend, var_dir)
    if backend == "postgres":
        on_postgres(overrides, databases)
    return launch(overrides), databases, backend


def stop_stack(
    stack: Stack | None, databases: TestDatabases | None, var_dir: str | None = None, floor: Any = None
) -> None:
    """Stops what :func:`start_stack` started (either may be missing when starting failed), and the bench's
    floor process if it has one, and removes its files."""
    if floor is not None:
        floor.terminate()
        floor.wait(timeout=10)
    if stack is not None:
        stack.stop()
    if databases is not None:
        databases.drop_all()
    if var_dir is not None:
        shutil.rmtree(var_dir, ignore_errors=True)


def admin_session(stack: Stack):
    """A ``requests`` session signed in through the gateway as the stack's administrator."""
    import requests

    token = requests.post(
        f"{stack.gateway_url}/api/v1/auth/token",
        json={"username": "admin", "password": stack.env["VIGIL_ADMIN_PASSWORD"]},
        timeout=30,
    ).json()["access_token"]
    admin = requests.Session()
    admin.headers["Authorization"] = f"Bearer {token}"
    return admin


def delete_queues(prefix: str | None) -> None:
    """Deletes the services' RabbitMQ queues of a run under ``prefix`` (none: nothing to do)."""
    if not prefix:
        return
    from kombu import Connection

    with Connection(rabbitmq_url(), connect_timeout=5) as conn:
        channel = conn.channel()
        for name in SERVICE_QUEUES:
            try:
                channel.queue_delete(f"{prefix}.{name}")
            except Exception:  # noqa: BLE001 - never declared
                channel = conn.channel()


def service_settings(service: str, database_url: str, var_dir: str | None, **settings: object) -> Settings:
    """A service's settings as its unit tests have them (test secret, in-memory broker, a fresh key);
    a setting given as None keeps its default."""
    if var_dir is not None:
        os.environ.setdefault("VIGIL_VAR_DIR", var_dir)
    values: dict[str, object] = {
        "database_url": database_url,
        "internal_secret": TEST_SECRET,
        "broker_url": "memory://",
        "log_level": "WARNING",
        "encryption_keys": (generate_key(),),
        "blind_index_key": "bench",
    }
    values.update(settings)
    values = {key: value for key, value in values.items() if value is not None}
    return Settings.from_env(service, **values)  # type: ignore[arg-type]


def percentile(values: list[float], share: float) -> float:
    """The value below which ``share`` (0 to 1) of ``values`` lie; 0 when there are none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * share))] if ordered else 0.0


def per_call_ms(
    action: Callable[[], object], runs: int, *, warmup: int = 0, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Milliseconds of ``clock`` for each of ``runs`` calls of ``action``, after ``warmup`` calls not
    counted (``clock=time.thread_time``: the calling thread's CPU, not the waits)."""
    for _ in range(warmup):
        action()
    times = []
    for _ in range(runs):
        started = clock()
        action()
        times.append((clock() - started) * 1000)
    return times
