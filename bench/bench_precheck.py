"""1,000 customer creates with the ADT PreCheck on: does every PreCheck complete, how soon, and does
ADT ever see more PreChecks at once than the configured cap?

    .venv/bin/python bench/bench_precheck.py [--count 1000] [--rate 10] [--clients 16] [--latency-ms 200]
        [--adt-concurrency 8] [--credit-workers 2] [--worker-threads 12] [--backend postgres|embedded]
        [--planted-errors 0]

Starts its own Vigil on free ports: PostgreSQL + RabbitMQ (127.0.0.1 defaults, fresh databases and
queues, removed afterwards) unless ``--backend embedded``; with ``--credit-workers`` credit worker
processes (the stack's own and extra ones), each a pool of ``--worker-threads`` threads, all sharing
``VIGIL_ADT_CONCURRENCY=--adt-concurrency``. It makes an ADT monitoring company with PreCheck Order
Enabled, has the sandbox ADT endpoint answer in ``--latency-ms``, then ``--clients`` clients create
``--count`` ADT customers through the gateway, together at ``--rate`` creates a second (a steady,
paced rate; ``--rate 0``: each client as fast as the gateway answers). Every create starts a PreCheck.

The SSNs avoid the sandbox's test identities (``…1000``-``…1005``, ``…2001``-``…2003``): a random
``…2003`` is ADT answering 503 every time, which ends in ``error`` by design. ``--planted-errors N``
gives the first N creates that identity on purpose: they must end in ``error`` with ADT's reason.

It reads the PreChecks from the credit database once a second (not through the gateway: a poll of
1,000 customers would be load of its own) and reports:

- the create rate reached, the final status of every PreCheck and the reason of any not approved;
- create answered (the customer exists) → PreCheck result: p50 / p95 / max (target p95 ≤ 5 s); from
  the create sent too; and its stages: create sent → answered, → PreCheck row (customer relay,
  broker, credit worker), row → run started (credit relay,
  broker, credit worker), run → result (customer-service read, waiting for an ADT slot, ADT);
- the most PreChecks the sandbox held at once, against the cap (target: never above it);
- the load average (the machine may be shared) and the CPU seconds of each process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import shutil
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import requests
from bench_pipeline import group_cpu_seconds
from benchkit import delete_queues
from sqlalchemy import create_engine, text

from vigil_runner.stack import BIN, Process, Stack, free_port
from vigil_shared.config import PROCESS_NAMES
from vigil_shared.testing import TestDatabases, rabbitmq_url

FINAL = {"approved", "declined", "manual_review", "error"}
TARGET_P95 = 5.0
SANDBOX_IDENTITIES = {"1000", "1001", "1002", "1003", "1004", "1005", "2001", "2002", "2003"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--rate", type=float, default=10.0, help="creates a second, all clients together; 0: unpaced")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--latency-ms", type=int, default=200)
    parser.add_argument("--adt-concurrency", type=int, default=8, help="VIGIL_ADT_CONCURRENCY")
    parser.add_argument("--credit-workers", type=int, default=2, help="credit worker processes")
    parser.add_argument("--worker-threads", type=int, default=12, help="VIGIL_CREDIT_WORKER_THREADS")
    parser.add_argument("--backend", choices=("postgres", "embedded"), default="postgres")
    parser.add_argument("--keep-logs", metavar="DIR", help="copy every process's log here before cleaning up")
    parser.add_argument(
        "--planted-errors",
        type=int,
        default=0,
        help="creates with ADT's 503 identity: each must end in error, saying why",
    )
    args = parser.parse_args(argv)
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="vigil-bench-precheck-") as var_dir:
        overrides = {
            "VIGIL_VAR_DIR": var_dir,
            "VIGIL_ADMIN_USERNAME": "admin",
            "VIGIL_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "VIGIL_LOG_LEVEL": "WARNING",
            "VIGIL_RELAY_INTERVAL": "0.1",
            "VIGIL_PASSWORD_HASHING": "fast-for-tests",
            "VIGIL_ADT_CONCURRENCY": str(args.adt_concurrency),
            "VIGIL_CREDIT_WORKER_THREADS": str(args.worker_threads),
        }
        databases = TestDatabases(args.backend, var_dir)
        prefix = None
        if args.backend == "postgres":
            for name in PROCESS_NAMES:
                overrides[f"VIGIL_{name.upper()}_DATABASE_URL"] = databases.url_for(name)
            prefix = f"vigil-bench-{uuid.uuid4().hex[:8]}"
            overrides.update(VIGIL_BROKER_URL=rabbitmq_url(), VIGIL_QUEUE_PREFIX=prefix)
        stack = Stack.from_environment(overrides, dynamic_ports=True, inherit_vigil_settings=False)
        try:
            stack.prepare()
            stack.start()
            for n in range(1, args.credit_workers):
                extra_worker(stack, n)
            stack.wait_ready(timeout=240)
            return run(stack, args, load_before)
        finally:
            stack.stop()
            if args.keep_logs:
                shutil.copytree(stack.log_dir, args.keep_logs, dirs_exist_ok=True)
            databases.drop_all()
            if prefix:
                delete_queues(prefix)


def extra_worker(stack: Stack, n: int) -> None:
    """One more ``vigil-credit worker`` on the same queue and database (its own health port). It logs
    at INFO: its "precheck finished" lines say where each of its PreChecks spent its time."""
    saved = dict(stack.env)
    stack.env |= {"VIGIL_CREDIT_WORKER_HEALTH_PORT": str(free_port()), "VIGIL_LOG_LEVEL": "INFO"}
    try:  # the child reads the environment when it is spawned only
        port = stack.env["VIGIL_CREDIT_WORKER_HEALTH_PORT"]
        stack.start([Process(f"credit-worker-{n + 1}", [str(BIN / "vigil-credit"), "worker"], health(port))])
    finally:
        stack.env.clear()
        stack.env.update(saved)


def task_steps(stack: Stack) -> dict[str, list[float]]:
    """The steps of the PreChecks the extra workers ran, from their "precheck finished" log lines."""
    steps: dict[str, list[float]] = {}
    for path in stack.log_dir.glob("credit-worker-*.log"):
        for line in path.read_text(errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if entry.get("msg") == "precheck finished":
                    for name in ("start_s", "subject_s", "adt_s", "record_s"):
                        steps.setdefault(name, []).append(float(entry[name]))
    return steps


def health(port: str) -> str:
    return f"http://127.0.0.1:{port}/readyz"


def ssn(planted: bool = False) -> str:
    """A random SSN that is none of the sandbox's test identities, or (``planted``) ADT's 503 one."""
    if planted:
        return f"{random.randint(100, 665)}-{random.randint(10, 99)}-2003"
    while True:
        last4 = f"{random.randint(1, 9999):04d}"
        if last4 not in SANDBOX_IDENTITIES:
            return f"{random.randint(100, 665)}-{random.randint(10, 99)}-{last4}"


class Creates:
    """``clients`` threads creating ADT customers, paced together to ``rate`` a second (0: unpaced)."""

    def __init__(self, base: str, headers: dict[str, str], location: int, company: int, args: argparse.Namespace):
        self.base, self.headers, self.location, self.company = base, headers, location, company
        self.count, self.rate, self.clients = args.count, args.rate, args.clients
        self.planted = args.planted_errors
        self.lock = threading.Lock()
        self.issued = 0
        self.created: dict[int, float] = {}  # customer id -> when its create was sent (epoch s)
        self.failures: list[str] = []
        self.answered: dict[int, float] = {}  # customer id -> when its create was answered 201 (epoch s)
        self.started = 0.0

    def take(self) -> tuple[float, bool] | None:
        """The next create's due time (monotonic) and whether it is a planted error, or None when all are issued."""
        with self.lock:
            if self.issued >= self.count:
                return None
            n, self.issued = self.issued, self.issued + 1
        due = self.started + n / self.rate if self.rate else time.monotonic()
        return due, n < self.planted

    def client(self, number: int) -> None:
        http = requests.Session()
        http.headers.update(self.headers)
        while (next_one := self.take()) is not None:
            due, planted = next_one
            if (delay := due - time.monotonic()) > 0:
                time.sleep(delay)
            body = {
                "kind": "customer",
                "first_name": "Bench",
                "last_name": f"Customer{number}",
                "city": "Ottawa",
                "state": "ON",
                "primary_phone": f"613-{random.randint(230, 999)}-{random.randint(0, 9999):04d}",
                "account_type": "Residential",
                "location_id": self.location,
                "monitoring_company_id": self.company,
                "ssn": ssn(planted),
                "birthdate": "1970-01-02",
                "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
                "address_line1": "1 Bench St",
                "zip": "K1A 0B1",
                "county": "Ottawa",
            }
            sent = time.time()
            try:
                response = http.post(f"{self.base}/customers?allow_duplicates=true", json=body, timeout=30)
            except requests.RequestException as exc:
                with self.lock:
                    self.failures.append(f"{type(exc).__name__}: {exc}"[:200])
                continue
            with self.lock:
                if response.status_code == 201:
                    self.created[response.json()["id"]] = sent
                    self.answered[response.json()["id"]] = time.time()
                else:
                    self.failures.append(f"{response.status_code}: {response.text[:200]}")

    def run(self) -> float:
        self.started = time.monotonic()
        threads = [threading.Thread(target=self.client, args=(n,)) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return time.monotonic() - self.started


def epoch(value: Any) -> float | None:
    if value is None:
        return None
    at = datetime.fromisoformat(value) if isinstance(value, str) else value
    return (at if at.tzinfo else at.replace(tzinfo=UTC)).timestamp()


def read_prechecks(engine: Any) -> list[dict[str, Any]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT customer_id, status, error, attempts, created_at, started_at, completed_at FROM prechecks")
        ).mappings()
        return [dict(row) for row in rows]


class CpuMeter:
    """CPU seconds of each process of the stack (with its children: pool processes, gunicorn workers),
    and of the PostgreSQL and RabbitMQ servers (shared with whatever else runs on the machine)."""

    def __init__(self, stack: Stack):
        self.stack = stack
        self.before = self.sample()

    def sample(self) -> dict[str, float]:
        sample = {p.name: group_cpu_seconds(p.popen.pid) for p in self.stack.processes if p.popen}
        sample |= servers_cpu()
        return sample

    def used(self) -> dict[str, float]:
        after = self.sample()
        return {name: after[name] - self.before.get(name, 0.0) for name in after}


def servers_cpu() -> dict[str, float]:
    """CPU seconds so far of every postgres and RabbitMQ (beam.smp) process on the machine."""
    ticks = os.sysconf("SC_CLK_TCK")
    totals = {"postgres (shared)": 0.0, "rabbitmq (shared)": 0.0}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        command, fields = stat[stat.index("(") + 1 : stat.rindex(")")], stat.rsplit(") ", 1)[1].split()
        name = "postgres (shared)" if command == "postgres" else "rabbitmq (shared)" if command == "beam.smp" else None
        if name:
            totals[name] += (int(fields[11]) + int(fields[12])) / ticks
    return totals


def run(stack: Stack, args: argparse.Namespace, load_before: tuple[float, float, float]) -> int:
    base, sandbox = f"{stack.gateway_url}/api/v1", stack.env["VIGIL_BUREAU_URL"]
    password = stack.env["VIGIL_ADMIN_PASSWORD"]
    token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=15).json()
    headers = {"Authorization": f"Bearer {token['access_token']}"}
    location = requests.post(f"{base}/locations", json={"name": "Bench"}, headers=headers, timeout=15).json()["id"]
    company = requests.post(
        f"{base}/monitoring-companies",
        json={"name": "ADT Bench", "is_adt": True, "precheck_order_enabled": True},
        headers=headers,
        timeout=15,
    ).json()["id"]
    requests.post(
        f"{sandbox}/sandbox/control", json={"latency_ms": args.latency_ms, "reset_max_in_flight": True}, timeout=5
    )
    credit_db = stack.env.get("VIGIL_CREDIT_DATABASE_URL") or f"sqlite:///{stack.env['VIGIL_VAR_DIR']}/credit.db"
    engine = create_engine(credit_db)
    cpu = CpuMeter(stack)
    loads: list[float] = []
    sampling = threading.Event()

    def sample_load() -> None:
        while not sampling.wait(5):
            loads.append(os.getloadavg()[0])

    threading.Thread(target=sample_load, daemon=True).start()
    creates = Creates(base, headers, location, company, args)
    print(
        f"load average at start: {' '.join(f'{x:.2f}' for x in load_before)} on {os.cpu_count()} cores; "
        f"{args.backend}{' + RabbitMQ' if args.backend == 'postgres' else ''}; "
        f"{args.count} creates at {f'{args.rate:g}/s' if args.rate else 'as fast as answered'} by {args.clients} "
        f"clients; ADT answers in {args.latency_ms} ms, cap {args.adt_concurrency} "
        f"(at most {args.adt_concurrency * 1000 / args.latency_ms:.0f} PreChecks/s); "
        f"{args.credit_workers} credit workers x {args.worker_threads} threads",
        flush=True,
    )
    create_seconds = creates.run()
    created = dict(creates.created)
    deadline = time.monotonic() + 600
    rows: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = [r for r in read_prechecks(engine) if r["customer_id"] in created]
        if len(rows) >= len(created) and all(r["status"] in FINAL for r in rows):
            break
        time.sleep(1)
    sampling.set()
    used = cpu.used()
    engine.dispose()
    concurrency = requests.get(f"{sandbox}/sandbox/concurrency", timeout=5).json()
    # the API shows what the database holds (a sample, through the gateway)
    for customer_id in list(created)[:: max(1, len(created) // 10)]:
        latest = requests.get(f"{base}/customers/{customer_id}/precheck", headers=headers, timeout=15).json()["latest"]
        row = next(r for r in rows if r["customer_id"] == customer_id)
        assert latest and latest["status"] == row["status"], (customer_id, latest, row["status"])
    return report(args, creates, rows, create_seconds, concurrency["adt"], used, loads, load_before, task_steps(stack))


def percentiles(values: list[float]) -> str:
    if not values:
        return "none"
    values = sorted(values)
    p95 = values[int(0.95 * (len(values) - 1))]
    return f"p50 {statistics.median(values):.2f} s, p95 {p95:.2f} s, max {values[-1]:.2f} s"


def report(
    args: argparse.Namespace,
    creates: Creates,
    rows: list[dict[str, Any]],
    create_seconds: float,
    adt: dict[str, int],
    cpu: dict[str, float],
    loads: list[float],
    load_before: tuple[float, float, float],
    steps: dict[str, list[float]],
) -> int:
    created, answered, failures = creates.created, creates.answered, creates.failures
    answers = [answered[c] - created[c] for c in created]
    print(
        f"creates: {len(created)} of {args.count} answered 201 in {create_seconds:.1f} s "
        f"({len(created) / create_seconds:.1f}/s); {len(failures)} failed"
    )
    for failure in failures[:5]:
        print(f"   {failure}")
    statuses = Counter(r["status"] for r in rows)
    statuses["(no PreCheck)"] = len(created) - len(rows)
    print("PreChecks by final status: " + ", ".join(f"{s} {n}" for s, n in statuses.most_common() if n))
    reasons = Counter(f"{r['status']}: {r['error'] or '(no reason)'}" for r in rows if r["status"] != "approved")
    for reason, n in reasons.most_common(10):
        print(f"   {n} x {reason}")
    retried = sum(1 for r in rows if (r["attempts"] or 0) > 1)
    if retried:
        print(f"   {retried} PreCheck(s) took more than one attempt")
    done = [r for r in rows if r["completed_at"] is not None]
    total = [epoch(r["completed_at"]) - answered[r["customer_id"]] for r in done]
    from_sent = [epoch(r["completed_at"]) - created[r["customer_id"]] for r in done]
    to_row = [epoch(r["created_at"]) - created[r["customer_id"]] for r in done]
    to_start = [epoch(r["started_at"]) - epoch(r["created_at"]) for r in done if r["started_at"]]
    to_result = [epoch(r["completed_at"]) - epoch(r["started_at"]) for r in done if r["started_at"]]
    print(f"create answered 201 -> PreCheck result: {percentiles(total)} (target p95 <= {TARGET_P95:.0f} s)")
    print(f"   create sent -> PreCheck result (the create's own time included): {percentiles(from_sent)}")
    print(f"   create sent -> answered 201 (gateway, customer service):         {percentiles(answers)}")
    print(f"   create sent -> PreCheck row (+ customer relay, broker, worker):  {percentiles(to_row)}")
    print(f"   row -> run started (credit relay, broker, credit worker):        {percentiles(to_start)}")
    print(f"   run -> result (customer read, ADT slot wait, ADT, record):       {percentiles(to_result)}")
    if steps:
        print(
            f"   inside the run ({len(steps['adt_s'])} PreChecks of the extra workers' logs): "
            + "; ".join(f"{name.removesuffix('_s')} {percentiles(values)}" for name, values in steps.items())
        )
    print(
        f"most PreChecks at ADT at once (the sandbox's count): {adt['max_in_flight']} "
        f"(configured cap {args.adt_concurrency}, across {args.credit_workers} credit worker processes)"
    )
    load_after = os.getloadavg()
    print(
        f"load average: at start {' '.join(f'{x:.2f}' for x in load_before)}, during the run (1-min, every 5 s) "
        f"{f'{min(loads):.1f}-{max(loads):.1f}' if loads else 'n/a'}, at end {' '.join(f'{x:.2f}' for x in load_after)}"
    )
    busiest = sorted(cpu.items(), key=lambda item: -item[1])
    print(
        "CPU seconds during the run: "
        + ", ".join(f"{name} {seconds:.1f}" for name, seconds in busiest if seconds >= 0.1)
    )
    p95 = sorted(total)[int(0.95 * (len(total) - 1))] if total else float("inf")
    ok = (
        not failures
        and len(created) == args.count
        and len(done) == len(created)
        and statuses.get("error", 0) == args.planted_errors
        and p95 <= TARGET_P95
        and adt["max_in_flight"] <= args.adt_concurrency
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        sys.exit(main())
