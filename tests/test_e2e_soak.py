"""A bounded soak of what ``make run`` starts: the real runner under churn.

It starts its own ``vigil-run`` (its own var/ and free ports) on the embedded defaults (SQLite
databases and the SQLite broker) whatever backend the rest of the suite uses, and a second one on
PostgreSQL + RabbitMQ when the suite runs there. Several clients create customers, add and update
properties and delete customers for about a minute; in the middle the property worker is killed
with ``kill -9``. In the end: no 5xx, the runner restarted the worker and every process is up, every
event is in the inbox of each of its subscribers, and no property of a deleted customer is left.
Then a second runner is refused with where Vigil runs, and when the runner is killed with
``kill -9`` every process it started, and theirs, goes with it.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import requests
from conftest import EVERY_BACKEND, backend_settings, customer_body, stack_diagnostics, unique_phone

from vigil_runner.stack import Stack, is_ready
from vigil_shared.config import SERVICES
from vigil_shared.messaging.contracts import subscribers

BIN = Path(sys.executable).parent
CLIENTS = 4
CHURN_SECONDS = 60
REQUESTS_PER_CLIENT_PER_SECOND = 8
KILL_AFTER = 20


def wait_until(check, timeout: float, what: str, interval: float = 0.2, report=None):
    """Polls ``check``; on time-out fails with ``report()`` (what the processes were doing) if given."""
    deadline = time.monotonic() + timeout
    while not (result := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{report() if report else ''}")
        time.sleep(interval)
    return result


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1][0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def process_groups(pgids: set[int]) -> set[int]:
    """Every live process in these process groups: the runner's children and what they forked."""
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) in pgids and fields[0] != "Z":
                found.add(int(entry.name))
    return found


class Runner:
    """``vigil-run`` as a user starts it, on its own var/ and ports."""

    def __init__(self, var_dir: Path, backend: dict[str, str]):
        self.stack = Stack.from_environment(
            {
                "VIGIL_VAR_DIR": str(var_dir),
                "VIGIL_ADMIN_USERNAME": "admin",
                "VIGIL_ADMIN_PASSWORD": secrets.token_urlsafe(16),
                "VIGIL_LOG_LEVEL": "INFO",
                "VIGIL_RELAY_INTERVAL": "0.1",
            }
            | backend,
            dynamic_ports=True,
            inherit_vigil_settings=False,
        )
        self.var_dir = var_dir
        self.plan = self.stack._plan()
        self.out, self.err = var_dir / "runner.out", var_dir / "runner.err"
        self.popen: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.out, "wb") as out, open(self.err, "wb") as err:
            self.popen = subprocess.Popen([str(BIN / "vigil-run")], env=self.stack.env, stdout=out, stderr=err)
        wait_until(
            lambda: self.popen.poll() is not None or "Vigil is running" in self.out.read_text(),
            180,
            "the runner to start",
        )
        assert self.popen.poll() is None, self.err.read_text()[-3000:]

    def pids(self) -> dict[str, int]:
        for _ in range(50):  # the runner may be rewriting it
            try:
                return json.loads((self.var_dir / "run.lock").read_text())["processes"]
            except (ValueError, KeyError):
                time.sleep(0.05)
        raise AssertionError("var/run.lock stays unreadable")

    def not_ready(self) -> list[str]:
        return [p.name for p in self.plan if not is_ready(p.ready_url)]

    def stop(self) -> None:
        if self.popen and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


# On the embedded default always, and on PostgreSQL + RabbitMQ too when the suite runs there.
@pytest.fixture(scope="module", params=EVERY_BACKEND)
def runner(request, tmp_path_factory):
    var_dir = tmp_path_factory.mktemp(f"soak-{request.param}")
    with backend_settings(request.param, var_dir) as backend:
        running = Runner(var_dir, backend)
        try:
            running.start()
            yield running
        finally:
            groups = set()
            # nothing was started, or the lock was already released
            with contextlib.suppress(OSError, AssertionError):
                groups = set(running.pids().values())
            running.stop()
            for pid in process_groups(groups):  # never leave anything behind, whatever failed
                os.kill(pid, signal.SIGKILL)


class Churn:
    def __init__(self, base_url: str, token: str, location_id: int):
        self.base_url, self.location_id = base_url, location_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.failures: list[str] = []
        self.requests = 0
        self.deleted: dict[int, list[tuple[int, str]]] = {}  # customer -> its properties (id, account number)
        self.kept: dict[int, list[tuple[int, str]]] = {}

    def client(self, number: int) -> None:
        http = requests.Session()
        interval = 1 / REQUESTS_PER_CLIENT_PER_SECOND
        next_at = time.monotonic()

        def call(method, path, **kwargs):
            nonlocal next_at
            time.sleep(max(0.0, next_at - time.monotonic()))
            next_at = max(next_at + interval, time.monotonic() - interval)
            try:
                response = http.request(method, f"{self.base_url}{path}", headers=self.headers, timeout=30, **kwargs)
            except requests.RequestException as exc:
                with self.lock:
                    self.failures.append(f"{method} {path}: {exc}")
                return None
            with self.lock:
                self.requests += 1
                if response.status_code >= 500:
                    self.failures.append(f"{method} {path}: {response.status_code} {response.text[:300]}")
            return response

        rounds = 0
        while not self.stopping.is_set():
            rounds += 1
            created = call(
                "POST",
                "/api/v1/customers",
                params={"allow_duplicates": "true"},
                json=customer_body(self.location_id, last_name=f"Soak{number}", primary_phone=unique_phone("613")),
            )
            if created is None or created.status_code != 201:
                continue
            customer = created.json()["id"]
            properties = []
            for _ in range(2):
                account = f"SOAK-{uuid.uuid4().hex[:12]}".upper()
                made = call(
                    "POST",
                    f"/api/v1/customers/{customer}/properties",
                    json={"account_number": account, "address": "5 Soak Street"},
                )
                if made is not None and made.status_code == 201:
                    properties.append((made.json()["id"], account))
            call("PATCH", f"/api/v1/customers/{customer}", json={"city": "Kanata"})
            for prop, _ in properties:
                call("PATCH", f"/api/v1/properties/{prop}", json={"address": "6 Soak Street"})
            if rounds % 3:  # two customers in three are deleted: their properties must follow
                gone = call("DELETE", f"/api/v1/customers/{customer}")
                if gone is not None and gone.status_code == 204:
                    with self.lock:
                        self.deleted[customer] = properties
                    continue
            with self.lock:
                self.kept[customer] = properties


def all_outbox_events(http: requests.Session, base: str, service: str) -> list[dict]:
    events, page = [], 1
    while True:
        response = http.get(f"{base}/api/v1/ops/{service}/outbox", params={"page": page, "per_page": 100}, timeout=30)
        assert response.status_code == 200, response.text
        items = response.json()["items"]
        events += items
        if len(items) < 100:
            return events
        page += 1


def test_churn_with_a_worker_killed_keeps_every_event_and_every_process(runner):
    base = runner.stack.gateway_url
    http = requests.Session()
    token = http.post(
        f"{base}/api/v1/auth/token",
        json={"username": "admin", "password": runner.stack.env["VIGIL_ADMIN_PASSWORD"]},
        timeout=30,
    ).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    location = http.post(f"{base}/api/v1/locations", json={"name": "Soak Office"}, timeout=30).json()["id"]

    churn = Churn(base, token, location)
    clients = [threading.Thread(target=churn.client, args=(n,)) for n in range(CLIENTS)]
    started = time.monotonic()
    for client in clients:
        client.start()
    try:
        time.sleep(KILL_AFTER)
        killed = runner.pids()["property-worker"]
        os.kill(killed, signal.SIGKILL)
        wait_until(lambda: runner.pids()["property-worker"] != killed, 30, "the runner to restart the worker")
        wait_until(lambda: not runner.not_ready(), 60, "the restarted worker to be ready")
        time.sleep(max(0.0, CHURN_SECONDS - (time.monotonic() - started)))
    finally:
        churn.stopping.set()
        for client in clients:
            client.join(60)

    assert churn.failures == [], churn.failures[:10]
    assert churn.requests > CLIENTS * CHURN_SECONDS  # it was real churn, not a few calls
    assert churn.deleted and churn.kept

    # No property of a deleted customer is left (the cascade went through the killed worker's queue).
    # A property is known by its account number: the id of a deleted row may name a newer one.
    def account_at(prop: int) -> str | None:
        response = http.get(f"{base}/api/v1/properties/{prop}", timeout=30)
        assert response.status_code in (200, 404), response.text
        return response.json()["account_number"].upper() if response.status_code == 200 else None

    def left_behind():
        return [
            (customer, prop)
            for customer, properties in churn.deleted.items()
            for prop, account in properties
            if account_at(prop) == account
        ]

    def cascade_report():
        return f"left: {left_behind()[:20]}\n{stack_diagnostics(runner.stack, lines=60)}\n--- runner.err\n" + "\n".join(
            runner.err.read_text(errors="replace").splitlines()[-30:]
        )

    # Eventually, not at once: the backlog the killed worker left drains at the machine's pace (on two
    # busy cores, a minute or more); a lost event never drains.
    wait_until(
        lambda: not left_behind(),
        180,
        "every deleted customer's properties to be gone",
        interval=1,
        report=cascade_report,
    )
    for properties in churn.kept.values():
        for prop, account in properties:
            assert account_at(prop) == account

    # Every event was published and recorded once in each subscriber's inbox.
    def published():
        events = [event for service in ("customer", "property") for event in all_outbox_events(http, base, service)]
        return events if all(event["published_at"] for event in events) else None

    events = wait_until(published, 60, "every outbox event to be published", interval=1)
    assert len(events) > len(churn.deleted) * 3
    # every service's inbox (the gateway's feed of every event is checked by test_e2e_webhooks)
    checks = [(sub, event["event_id"]) for event in events for sub in subscribers(event["type"]) if sub in SERVICES]

    deadline = time.monotonic() + 60  # for every check together: a lost event fails in a minute, not in hours

    def in_inbox(check) -> str | None:
        subscriber, event_id = check
        while True:
            response = http.get(f"{base}/api/v1/ops/{subscriber}/inbox/{event_id}", timeout=30)
            if response.status_code == 200:
                return None
            if time.monotonic() > deadline:
                return f"{event_id} not in the {subscriber} inbox: {response.status_code}"
            time.sleep(0.5)

    with ThreadPoolExecutor(8) as pool:
        missing = [m for m in pool.map(in_inbox, checks) if m]
    assert missing == [], missing[:10]

    # The runner restarted the killed worker and kept everything else; every process is up.
    assert runner.popen.poll() is None
    assert runner.not_ready() == []
    errors = runner.err.read_text()
    assert f"property-worker (pid {killed}) was killed by signal 9" in errors, errors[-3000:]
    assert "property-worker restarted" in errors


def test_a_second_runner_says_where_vigil_runs(runner):
    second = subprocess.run([str(BIN / "vigil-run")], env=runner.stack.env, capture_output=True, text=True, timeout=60)
    assert second.returncode == 1
    assert "already running" in second.stderr and f"pid {runner.popen.pid}" in second.stderr, second.stderr
    assert runner.stack.gateway_url in second.stderr
    assert runner.not_ready() == []  # and it disturbed nothing


def test_every_process_dies_with_a_runner_killed_with_sigkill(runner):
    children = set(runner.pids().values())
    family = process_groups(children)
    assert children <= family and len(family) > len(children)  # gunicorn workers, Celery pool processes
    os.kill(runner.popen.pid, signal.SIGKILL)
    runner.popen.wait(10)
    wait_until(lambda: not any(alive(pid) for pid in family), 30, "every process to stop with the runner")
    # Nothing holds the ports or var/ any more: a new runner could start right away.
    lock_file = runner.var_dir / "run.lock"
    assert lock_holders(lock_file) == [], lock_holders(lock_file)
    after = Stack(env=runner.stack.env, log_dir=runner.var_dir / "log")
    after.acquire_lock()
    after.lock.release()


def lock_holders(path: Path) -> list[str]:
    """Every live process with ``path`` open: its pid, parent, process group and command line."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if not any(os.readlink(fd) == str(path) for fd in (entry / "fd").iterdir()):
                continue
            fields = (entry / "stat").read_text().rsplit(") ", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")[:150]
        except OSError:
            continue
        if fields[0] != "Z":
            found.append(f"pid {entry.name} ppid {fields[1]} pgid {fields[2]} state {fields[0]}: {command}")
    return found
