"""The event pipeline under churn: how fast each queue drains, and how soon a customer's deletion cascades.

    .venv/bin/python bench/bench_pipeline.py [--brokers embedded,rabbitmq] [--rate 60] [--clients 6]
                                             [--steady 30] [--pause 15]

For each broker it starts its own Vigil on free ports: ``embedded`` is the default of ``make run``
(SQLite databases, the SQLite broker), ``rabbitmq`` the production shape (PostgreSQL + RabbitMQ),
``filesystem`` kombu's filesystem transport (the old embedded default, for comparison). Then:

1. **Steady churn**: ``--clients`` clients together send about ``--rate`` requests/s through the
   gateway: create a customer, add two properties, update the customer and a property, delete the
   customer. The cascade latency is the time from the DELETE's answer until the property worker
   committed the removal of the customer's properties (its inbox row for that ``customer.deleted``;
   the removal is in the same transaction), so measuring adds no load. Every 5xx is counted, and
   at the end every property of a deleted customer must answer 404.
2. **Drain rate**: the churn goes on while the customer and property workers are paused (SIGSTOP)
   for ``--pause`` seconds, so a backlog builds up; after SIGCONT, each queue's drain rate is the
   events its service's inbox recorded per second until it caught up with its source outboxes,
   and, since a busy machine lengthens that, the events per CPU-second the worker used: what one
   free core would drain.

Targets: every queue drains at least 200 events/s; a cascade is done within 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime

import benchkit
import requests
from sqlalchemy import column, create_engine, func, select, table, text

from vigil_runner.stack import Stack
from vigil_shared.messaging.contracts import SUBSCRIPTIONS
from vigil_shared.testing import TestDatabases

TARGET_DRAIN = 200.0
TARGET_CASCADE = 5.0


def start(broker: str, var_dir: str, rabbitmq_databases: str = "postgres") -> tuple[Stack, TestDatabases, str | None]:
    overrides = benchkit.stack_overrides(var_dir, {"VIGIL_LOG_LEVEL": "WARNING", "VIGIL_RELAY_INTERVAL": "0.1"})
    databases = TestDatabases(
        "postgres" if broker == "rabbitmq" and rabbitmq_databases == "postgres" else "embedded", var_dir
    )
    prefix = None
    if broker == "rabbitmq":
        prefix = benchkit.on_postgres(overrides, databases)
    elif broker == "filesystem":
        overrides["VIGIL_BROKER_URL"] = "filesystem://"
    return benchkit.launch(overrides), databases, prefix


class Churn:
    """Clients paced to a total request rate; records 5xx and cascade latencies."""

    def __init__(self, base: str, token: str, location_id: int, rate: float, clients: int):
        self.base, self.location_id = base, location_id
        self.headers = {"Authorization": f"Bearer {token}"}
        self.interval = clients / rate  # seconds between one client's requests
        self.clients = clients
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.requests = self.errors = 0
        self.server_errors: list[str] = []
        self.deleted: dict[int, tuple[float, list[int]]] = {}  # customer -> (DELETE answered, epoch s; properties)

    def _call(self, http: requests.Session, method: str, path: str, **kwargs) -> requests.Response | None:
        try:
            response = http.request(method, f"{self.base}{path}", headers=self.headers, timeout=30, **kwargs)
        except requests.RequestException as exc:
            with self.lock:
                self.server_errors.append(f"{method} {path}: {exc}")
            return None
        with self.lock:
            self.requests += 1
            if response.status_code >= 500:
                self.server_errors.append(f"{method} {path}: {response.status_code} {response.text[:200]}")
        return response

    def client(self, number: int) -> None:
        http = requests.Session()
        next_at = time.monotonic() + number * self.interval / self.clients

        def paced(method, path, **kwargs):
            nonlocal next_at
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            next_at = max(next_at + self.interval, time.monotonic() - self.interval)
            return self._call(http, method, path, **kwargs)

        while not self.stopping.is_set():
            customer = paced(
                "POST",
                "/api/v1/customers",
                params={"allow_duplicates": "true"},
                json={
                    "kind": "customer",
                    "first_name": "Bench",
                    "last_name": f"Churn{number}",
                    "city": "Ottawa",
                    "state": "ON",
                    "primary_phone": f"613-555-{uuid.uuid4().int % 10_000:04d}",
                    "account_type": "Residential",
                    "location_id": self.location_id,
                },
            )
            if customer is None or customer.status_code != 201:
                continue
            cid = customer.json()["id"]
            properties = []
            for _ in range(2):
                prop = paced(
                    "POST",
                    f"/api/v1/customers/{cid}/properties",
                    json={"account_number": f"B-{uuid.uuid4().hex[:12]}", "address": "1 Bench Road"},
                )
                if prop is not None and prop.status_code == 201:
                    properties.append(prop.json()["id"])
            paced("PATCH", f"/api/v1/customers/{cid}", json={"city": "Kanata"})
            if properties:
                paced("PATCH", f"/api/v1/properties/{properties[0]}", json={"address": "2 Bench Road"})
            deleted = paced("DELETE", f"/api/v1/customers/{cid}")
            if deleted is not None and deleted.status_code == 204 and properties:
                with self.lock:
                    self.deleted[cid] = (time.time(), properties)

    def run(self) -> list[threading.Thread]:
        threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(self.clients)]
        for thread in threads:
            thread.start()
        return threads


def cascade_latencies(stack: Stack, deleted: dict[int, tuple[float, list[int]]]) -> dict[int, float | None]:
    """Per deleted customer: seconds from the DELETE's answer until the property worker had removed its
    properties, i.e. committed the ``customer.deleted`` event (the removal is in that transaction)."""
    with create_engine(database_url(stack, "customer")).connect() as conn:
        events = {}
        for event_id, data in conn.execute(
            text("SELECT event_id, data FROM outbox_events WHERE type = 'customer.deleted'")
        ):
            data = json.loads(data) if isinstance(data, str) else data
            events[event_id] = data["customer_id"]
    with create_engine(database_url(stack, "property")).connect() as conn:
        processed = {
            event_id: at for event_id, at in conn.execute(text("SELECT event_id, processed_at FROM processed_events"))
        }
    latencies: dict[int, float | None] = {customer: None for customer in deleted}
    for event_id, customer in events.items():
        if customer in deleted and event_id in processed:
            at = processed[event_id]
            at = datetime.fromisoformat(at) if isinstance(at, str) else at
            at = at if at.tzinfo else at.replace(tzinfo=UTC)
            latencies[customer] = at.timestamp() - deleted[customer][0]
    return latencies


def inbox_count(url: str) -> int:
    engine = create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(text("SELECT count(*) FROM processed_events")).scalar_one()
    finally:
        engine.dispose()


def expected_count(stack: Stack, service: str) -> int:
    """Events the service's queue is due: every subscribed event in the other services' outboxes."""
    types = SUBSCRIPTIONS.get(service, frozenset())
    total = 0
    for source in ("customer", "property", "billing", "credit"):
        engine = create_engine(database_url(stack, source))
        try:
            with engine.connect() as conn:
                outbox = table("outbox_events", column("type"))
                total += conn.execute(
                    select(func.count()).select_from(outbox).where(outbox.c.type.in_(sorted(types)))
                ).scalar_one()
        finally:
            engine.dispose()
    return total


def database_url(stack: Stack, service: str) -> str:
    return (
        stack.env.get(f"VIGIL_{service.upper()}_DATABASE_URL") or f"sqlite:///{stack.env['VIGIL_VAR_DIR']}/{service}.db"
    )


def group_cpu_seconds(pgid: int) -> float:
    """CPU time used so far by every process of a process group (a worker and its pool)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as stat:
                    fields = stat.read().rsplit(") ", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                total += (int(fields[11]) + int(fields[12])) / ticks
    return total


def worker_cpu(stack: Stack, services) -> dict[str, float]:
    return {
        p.name.removesuffix("-worker"): group_cpu_seconds(p.popen.pid)
        for p in stack.processes
        if p.name in {f"{s}-worker" for s in services}
    }


def signal_workers(stack: Stack, services, sig) -> None:
    for process in stack.processes:
        if process.name in {f"{s}-worker" for s in services}:
            os.killpg(process.popen.pid, sig)


def measure(broker: str, args) -> dict:
    with tempfile.TemporaryDirectory(prefix=f"vigil-bench-{broker}-") as var_dir:
        stack, databases, prefix = start(broker, var_dir, args.rabbitmq_databases)
        try:
            base = stack.gateway_url
            token = requests.post(
                f"{base}/api/v1/auth/token",
                json={"username": "admin", "password": stack.env["VIGIL_ADMIN_PASSWORD"]},
                timeout=30,
            ).json()["access_token"]
            location = requests.post(
                f"{base}/api/v1/locations",
                json={"name": f"Bench {broker}"},
                headers={"Authorization": f"Bearer {token}"},
                timeout=30,
            ).json()["id"]
            churn = Churn(base, token, location, args.rate, args.clients)
            threads = churn.run()
            started = time.monotonic()
            time.sleep(args.steady)
            steady_requests, steady_seconds = churn.requests, time.monotonic() - started
            # Deletions answered just before the pause would wait it out: not a cascade latency.
            cutoff = time.time() - TARGET_CASCADE - 1
            steady_deleted = {c: v for c, v in churn.deleted.items() if v[0] < cutoff}
            consumers = [s for s in SUBSCRIPTIONS if SUBSCRIPTIONS[s]]
            signal_workers(stack, consumers, signal.SIGSTOP)
            time.sleep(args.pause)
            churn.stopping.set()  # the backlog is built; drain it without new load competing
            for thread in threads[:-1]:
                thread.join(60)
            backlog = {s: expected_count(stack, s) - inbox_count(database_url(stack, s)) for s in consumers}
            before = {s: inbox_count(database_url(stack, s)) for s in consumers}
            cpu_before = worker_cpu(stack, consumers)
            resumed = time.monotonic()
            signal_workers(stack, consumers, signal.SIGCONT)
            drained: dict[str, float] = {}
            while len(drained) < len(consumers) and time.monotonic() - resumed < 300:
                for service in consumers:
                    target = before[service] + backlog[service]
                    if service not in drained and inbox_count(database_url(stack, service)) >= target:
                        drained[service] = time.monotonic() - resumed
                time.sleep(0.1)
            cpu = {s: worker_cpu(stack, [s])[s] - cpu_before[s] for s in consumers}
            latencies = cascade_latencies(stack, steady_deleted)
            http = requests.Session()
            left = sum(
                http.get(
                    f"{base}/api/v1/properties/{p}", headers={"Authorization": f"Bearer {token}"}, timeout=30
                ).status_code
                != 404
                for _, properties in steady_deleted.values()
                for p in properties
            )
            return {
                "broker": broker,
                "databases": f" (databases on {databases.backend})",
                "rate": steady_requests / steady_seconds,
                "server_errors": churn.server_errors,
                "cascades": [v for v in latencies.values() if v is not None],
                "missing_cascades": sum(v is None for v in latencies.values()),
                "properties_left": left,
                "drain": {s: (backlog[s], drained.get(s), cpu[s]) for s in consumers},
            }
        finally:
            benchkit.stop_stack(stack, databases)
            benchkit.delete_queues(prefix)


def report(result: dict) -> bool:
    ok = True
    print(
        f"\n== {result['broker']}{result.get('databases', '')}: "
        f"{result['rate']:.0f} requests/s of churn through the gateway"
    )
    print(f"   5xx / failed requests: {len(result['server_errors'])}")
    for line in result["server_errors"][:5]:
        print(f"     {line}")
    ok &= not result["server_errors"]
    cascades = sorted(result["cascades"])
    if cascades:
        p95 = cascades[int(0.95 * (len(cascades) - 1))]
        print(
            f"   cascade (DELETE answered -> properties gone), steady churn: n={len(cascades)} "
            f"p50={statistics.median(cascades):.2f}s p95={p95:.2f}s max={cascades[-1]:.2f}s "
            f"(target <= {TARGET_CASCADE:.0f}s)"
        )
        ok &= cascades[-1] <= TARGET_CASCADE
    if result["missing_cascades"] or result["properties_left"]:
        print(
            f"   cascades never finished: {result['missing_cascades']}; "
            f"properties of deleted customers left: {result['properties_left']}"
        )
        ok = False
    for service, (backlog, seconds, cpu) in result["drain"].items():
        if seconds is None:
            print(f"   queue {service}: backlog {backlog} NOT drained")
            ok = False
            continue
        rate = backlog / seconds if seconds else float("inf")
        print(
            f"   queue {service}: backlog of {backlog} events drained in {seconds:.1f}s = {rate:.0f} events/s "
            f"(target >= {TARGET_DRAIN:.0f}); the worker used {cpu:.1f} CPU-s: "
            f"{backlog / cpu if cpu else float('inf'):.0f} events per CPU-second"
        )
        ok &= rate >= TARGET_DRAIN
    return ok


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--brokers", default="embedded,rabbitmq")
    parser.add_argument("--rate", type=float, default=60.0, help="requests per second, all clients together")
    parser.add_argument("--clients", type=int, default=6)
    parser.add_argument("--steady", type=float, default=30.0, help="seconds of steady churn")
    parser.add_argument("--pause", type=float, default=15.0, help="seconds the workers are paused to build a backlog")
    parser.add_argument(
        "--rabbitmq-databases",
        choices=("postgres", "sqlite"),
        default="postgres",
        help="databases of the RabbitMQ run (sqlite: the same as the embedded run's)",
    )
    args = parser.parse_args(argv)
    print(f"load average at start: {', '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores")
    ok = True
    for broker in args.brokers.split(","):
        ok &= report(measure(broker.strip(), args))
    print(f"\nload average at end: {', '.join(f'{x:.2f}' for x in os.getloadavg())}")
    print("targets met" if ok else "targets NOT met")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
