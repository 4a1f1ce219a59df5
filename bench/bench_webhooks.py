"""Incoming signals and outgoing webhook fan-out, through the gateway, on its own Vigil.

    .venv/bin/python bench/bench_webhooks.py [--duration 10] [--senders 8] [--events 1000] [--subscribers 10]

It starts its own Vigil on free ports like the e2e suite (PostgreSQL + RabbitMQ when they answer,
the embedded defaults otherwise) and measures, one after the other:

1. **Signals in**: ``--senders`` keep-alive clients (in two load processes) post signed signals
   (Standard Webhooks, one integration) to ``POST /api/v1/integrations/{id}/signals`` for
   ``--duration`` seconds. Printed: the target, the measured rate, p50/p99 latency, every answer by
   status, the CPU per accepted signal of each process group (gateway, property, PostgreSQL, other
   Vigil processes, load generator) and **lost** — accepted signals missing from the property's
   signal log (counted there, after the run). Beside it, in the same run and on the same database,
   the **floor**: a bare Flask app (``bench/floor_app.py``, role ``signal``) under the same gunicorn
   model that checks the same signature and inserts the same signal; Vigil's figures are printed as
   ratios to it. Goal: >= 300/s with p99 <= 100 ms and none lost.
2. **Fan-out**: ``--subscribers`` subscriptions to ``property.monitoring_changed`` at a local
   keep-alive receiver; ``--events`` signed status changes (sent by ``--senders`` clients) make as
   many events; printed: the time from the first event to the last of ``events x subscribers``
   deliveries, the time after the last event was accepted, the delivery rate and the CPU per delivery
   of each process. Goal: 1,000 events to 10 subscribers within 10 s. Then the **burst**: as many
   events again, made while the gateway worker is stopped (SIGSTOP), so the fan-out alone is timed
   from when it goes on, once the other consumers of those events are at rest (their queues empty,
   their CPU idle: printed, with how long it took) (``--skip-burst`` leaves it out). ``--slow-seconds``
   adds a subscriber whose receiver sleeps that long per answer (the others must not wait for it);
   ``--py-spy FILE`` samples the gateway worker during the burst (its delivery process into
   FILE.deliver, the customer worker into FILE.customer).

The load average is printed before and after each part: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import benchkit
from bench_gateway_properties import Client, _serves, _stat, cpu_by_group, floor_gunicorn, free_port
from standardwebhooks.webhooks import Webhook

TARGET_RATE, TARGET_P99_MS = 300.0, 100.0
FANOUT_SECONDS = 10.0


def load_average() -> str:
    return "load average " + " ".join(f"{value:.2f}" for value in os.getloadavg())


def signed(secret: str, payload: dict) -> tuple[bytes, dict]:
    body = json.dumps(payload)
    message_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return body.encode(), {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "Content-Type": "application/json",
    }


def _senders(base_url: str, path: str, secret: str, payloads: list, threads: int, until: float, out) -> None:
    """In a load process: ``threads`` keep-alive clients post signed ``payloads`` in turn until ``until``
    (wall clock) or, when ``until`` is 0, once each; puts (latencies, answers) on ``out``."""
    latencies: list[float] = []
    answers: dict[int, int] = {}
    lock = threading.Lock()
    queue = list(payloads)

    def sender() -> None:
        client = Client(base_url)
        mine, counts = [], {}
        n = 0
        while True:
            if until:
                if time.time() >= until:
                    break
                payload = payloads[n % len(payloads)]
                n += 1
            else:
                with lock:
                    if not queue:
                        break
                    payload = queue.pop(0)
            body, headers = signed(secret, payload)
            started = time.perf_counter()
            status, _ = client.request("POST", path, body, headers)
            mine.append(time.perf_counter() - started)
            counts[status] = counts.get(status, 0) + 1
        with lock:
            latencies.extend(mine)
            for status, count in counts.items():
                answers[status] = answers.get(status, 0) + count

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    out.put((latencies, answers))


def run_load(base_url: str, path: str, secret: str, payloads: list, senders: int, duration: float = 0.0):
    """``senders`` clients in two processes; for ``duration`` seconds (or each payload once).
    Returns (latencies, answers, load process pids, seconds taken)."""
    out: multiprocessing.Queue = multiprocessing.Queue()
    processes = 2 if senders > 1 else 1
    until = time.time() + duration if duration else 0.0
    shares = [payloads[i::processes] for i in range(processes)] if not duration else [payloads] * processes
    started = time.monotonic()
    children = [
        multiprocessing.Process(
            target=_senders,
            args=(base_url, path, secret, shares[i], senders // processes + (i < senders % processes), until, out),
        )
        for i in range(processes)
    ]
    for child in children:
        child.start()
    results = [out.get() for _ in children]
    for child in children:
        child.join()
    latencies = [value for result in results for value in result[0]]
    answers: dict[int, int] = {}
    for _, counts in results:
        for status, count in counts.items():
            answers[status] = answers.get(status, 0) + count
    return latencies, answers, {child.pid for child in children}, time.monotonic() - started


# --- the floor -----------------------------------------------------------------------------------


def start_floor(env: dict, secret: str) -> tuple[subprocess.Popen, str]:
    """The bare Flask app taking the same signal into the same signal log, as the gateway is run."""
    database = env.get("VIGIL_PROPERTY_DATABASE_URL") or f"sqlite:///{env['VIGIL_VAR_DIR']}/property.db"
    url = f"http://127.0.0.1:{free_port()}"
    argv = [*floor_gunicorn(env), "-b", urlparse(url).netloc, "floor_app:create_app()"]
    role = {"FLOOR_ROLE": "signal", "FLOOR_DATABASE_URL": database, "FLOOR_SECRET": secret}
    popen = subprocess.Popen(argv, env=os.environ | role, start_new_session=True, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    while Client(url).request("POST", "/signals", b"{}", {})[0] != 401:
        if popen.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the floor app did not start")
        time.sleep(0.2)
    return popen, url


# --- measuring -----------------------------------------------------------------------------------


def measure(stack, floors, prefix, base_url, path, secret, payloads, senders, duration):
    """One timed run: rate, p50/p99, answers and CPU ms per accepted request by process group."""
    before = cpu_by_group(stack, set(), prefix, floors)
    latencies, answers, pids, took = run_load(base_url, path, secret, payloads, senders, duration)
    after = cpu_by_group(stack, pids, prefix, floors)
    before["load generator"] = 0.0
    accepted = answers.get(200, 0)
    cpu = {
        group: (after[group] - before.get(group, 0.0)) * 1000 / max(accepted, 1)
        for group in after
        if after[group] - before.get(group, 0.0) > 0
    }
    p50 = statistics.median(latencies) * 1000 if latencies else 0.0
    return accepted, accepted / took, p50, benchkit.percentile(latencies, 0.99) * 1000, answers, cpu


def split_cpu(cpu: dict) -> str:
    """Vigil's share (its processes and PostgreSQL) apart from the bench's receivers and load generator."""
    vigil = sum(ms for name, ms in cpu.items() if not name.startswith(("bench", "load")))
    receivers = cpu.get("bench (receivers)", 0.0)
    return f"Vigil (its processes + PostgreSQL) {vigil:.2f} ms, the bench's receivers {receivers:.2f} ms"


def print_cpu(cpu: dict) -> str:
    return ", ".join(f"{group} {ms:.2f}" for group, ms in sorted(cpu.items(), key=lambda item: -item[1]))


def cpu_by_process(stack, database_prefix: str | None) -> dict[str, float]:
    """CPU seconds so far of each Vigil process (by its name in the stack, with its children), the
    PostgreSQL backends of this run, this process (the receivers) and the load generator."""
    stats = {int(e): st for e in os.listdir("/proc") if e.isdigit() and (st := _stat(int(e))) is not None}
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)
    found: dict[str, float] = {}
    for process in stack.processes:
        todo = [process.popen.pid]
        while todo:
            pid = todo.pop()
            name = process.name
            if name == "gateway-worker" and pid != process.popen.pid and _deliver_process(pid):
                name = "gateway-deliver"  # the worker's delivery process, on its own line
            found[name] = found.get(name, 0.0) + (stats[pid][2] if pid in stats else 0.0)
            todo.extend(children.get(pid, []))
    if database_prefix:
        found["postgres"] = sum(
            cpu for pid, (cmd, _, cpu) in stats.items() if cmd.startswith("postgres") and _serves(pid, database_prefix)
        )
    usage = os.times()
    found["bench (receivers)"] = usage.user + usage.system
    found["load generator"] = usage.children_user + usage.children_system  # the finished load processes
    return found


def _parent(pid: int) -> int | None:
    found = _stat(pid)
    return found[1] if found else None


def _deliver_process(pid: int) -> bool:
    """Whether ``pid`` is a ``vigil-gateway deliver`` process."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().split(b"\0")[-2:-1] == [b"deliver"]
    except OSError:
        return False


class Receiver:
    """A keep-alive (HTTP/1.1) receiver that records each (path, webhook-id) it is sent."""

    def __init__(self, slow_seconds: float = 0.0) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.slow_seen: set[str] = set()  # webhook-ids the slow subscriber (path /slow) was sent
        self.last = 0.0
        self.arrivals: list[float] = []  # time.monotonic() of each first arrival (the burst's timeline)
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                if self.path == "/slow":  # a receiver that takes its time: it must not hold the others
                    time.sleep(slow_seconds)
                    with receiver.lock:
                        receiver.slow_seen.add(self.headers["webhook-id"])
                else:
                    with receiver.lock:
                        key = (self.path, self.headers["webhook-id"])
                        if key not in receiver.seen:
                            receiver.seen.add(key)
                            receiver.last = time.monotonic()
                            receiver.arrivals.append(receiver.last)
                self.send_response(204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def await_rest(stack, prefix: str | None, quiet: float = 5.0, timeout: float = 90.0) -> tuple[float, str]:
    """Waits until every service queue but the gateway's is empty (RabbitMQ's count of messages ready)
    and every Vigil process but the gateway worker's used under ``quiet`` % of a core for a second (the
    messages a worker holds unacknowledged are not counted as ready: its CPU shows them). Returns the
    seconds waited and what was seen last. Bounded: the gateway worker is stopped meanwhile, and one
    stopped past RabbitMQ's heartbeat window (two missed, 2 x 60 s) loses its connection, so the burst
    would time the redelivery (163 s once, after a 180 s wait)."""
    from kombu import Connection  # noqa: PLC0415 - the bench's own dependency, only here

    broker = stack.env.get("VIGIL_BROKER_URL", "")
    queues = [f"{stack.env['VIGIL_QUEUE_PREFIX']}.{name}" for name in benchkit.SERVICE_QUEUES]
    if not broker.startswith("amqp"):  # the embedded broker: its workers' CPU alone
        broker, queues = "memory://", []
    started = time.monotonic()
    seen = ""
    with Connection(broker, connect_timeout=5) as conn:
        channel = conn.channel()
        while time.monotonic() - started < timeout:
            ready = {}
            for name in queues:
                try:
                    ready[name.rsplit(".", 1)[1]] = channel.queue_declare(name, passive=True).message_count
                except Exception:  # noqa: BLE001 - a queue nobody declared (its channel is closed by the broker)
                    channel = conn.channel()
            before = cpu_by_process(stack, prefix)
            time.sleep(1.0)
            after = cpu_by_process(stack, prefix)
            busy = {
                name: (after[name] - before.get(name, 0.0)) * 100
                for name in after
                if not name.startswith(("gateway-worker", "gateway-deliver", "bench", "load"))
            }
            seen = "ready messages " + ", ".join(f"{n} {c}" for n, c in sorted(ready.items()))
            seen += "; % of a core: " + ", ".join(f"{n} {v:.0f}" for n, v in sorted(busy.items()) if v >= 0.5)
            # PostgreSQL is shown, not waited for: the delivery process's polls and autovacuum keep it busy
            if not any(ready.values()) and all(v < quiet for n, v in busy.items() if n != "postgres"):
                return time.monotonic() - started, seen
    return time.monotonic() - started, seen + " (NOT at rest: gave up waiting)"


def burst(
    stack, prefix: str | None, receiver: Receiver, run_events, subscribers: int, events: int, py_spy: str | None
) -> None:
    """The fan-out alone, without the making of the events: the gateway worker is stopped (SIGSTOP)
    while ``events`` more events are made, so they wait in its queue; then it goes on (SIGCONT) and
    every one of the ``events x subscribers`` deliveries is due at once. Timed from SIGCONT."""
    worker = next(p.popen.pid for p in stack.processes if p.name == "gateway-worker")
    with receiver.lock:
        receiver.seen.clear()
        receiver.arrivals.clear()
    print(f"burst, before: {load_average()}", flush=True)
    idle_before = cpu_by_process(stack, prefix)  # what each process spends doing nothing, for comparison
    time.sleep(3.0)
    idle = {
        name: (seconds - idle_before.get(name, 0.0)) * 100 / 3.0
        for name, seconds in cpu_by_process(stack, prefix).items()
        if seconds - idle_before.get(name, 0.0) >= 0.01
    }
    print("  idle, 3 s before the burst, % of a core: " + ", ".join(f"{n} {v:.0f}" for n, v in sorted(idle.items())))
    os.kill(worker, signal.SIGSTOP)
    try:
        run_events()
        # The other consumers of the same events (the customer worker's property.updated inbox, one
        # transaction per event, left from the fan-out and from these events) finish first, so the
        # burst measures the fan-out alone, not a backlog that is no webhook work.
        waited, rest = await_rest(stack, prefix)
        print(f"  at rest after {waited:.1f} s (the gateway worker still stopped): {rest}", flush=True)
    finally:
        os.kill(worker, signal.SIGCONT)
    spies = []
    if py_spy:  # the threads holding the GIL, sampled without stopping the process; its delivery process too
        delivering = [
            int(e)
            for e in os.listdir("/proc")
            if e.isdigit() and _deliver_process(int(e)) and _parent(int(e)) == worker
        ]
        customer = [p.popen.pid for p in stack.processes if p.name == "customer-worker"]
        for pid, out in (
            [(worker, py_spy)]
            + [(pid, f"{py_spy}.deliver") for pid in delivering]
            + [(pid, f"{py_spy}.customer") for pid in customer]
        ):
            spies.append(
                subprocess.Popen(
                    [os.path.join(os.path.dirname(sys.executable), "py-spy"), "record", "-p", str(pid), "--gil"]
                    + ["--nonblocking", "-r", "100", "-f", "raw", "-o", out],
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                )
            )
    cpu_before = cpu_by_process(stack, prefix)
    started = time.monotonic()
    expected = events * subscribers
    deadline = started + 180
    while len(receiver.seen) < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    done = receiver.last
    cpu_after = cpu_by_process(stack, prefix)
    for spy in spies:
        spy.send_signal(signal.SIGINT)  # py-spy writes its file
        spy.wait(timeout=60)
    delivered = len(receiver.seen)
    took = done - started
    per_delivery = {
        name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / max(delivered, 1)
        for name in cpu_after
        if cpu_after[name] - cpu_before.get(name, 0.0) >= 0.05
    }
    met = delivered == expected and took <= FANOUT_SECONDS
    print(
        f"burst (the gateway worker stopped while {events} events were made, then let go): target all "
        f"{expected} deliveries within {FANOUT_SECONDS:.0f} s; measured {delivered}/{expected} delivered, the last "
        f"{took:.1f} s after the worker went on ({delivered / max(took, 0.001):.0f} deliveries/s)  "
        f"[{'met' if met else 'NOT met'}]"
    )
    print(
        f"  CPU ms per delivery (the events' intake included): {print_cpu(per_delivery)}; "
        f"all: {sum(per_delivery.values()):.2f} ms; {split_cpu(per_delivery)}"
    )
    with receiver.lock:
        arrivals = sorted(receiver.arrivals)
    per_second = [0] * (int(max(took, 0.0)) + 1)
    for moment in arrivals:
        if moment >= started:
            per_second[min(int(moment - started), len(per_second) - 1)] += 1
    print(f"  deliveries in each second after the worker went on: {per_second}")
    print(f"burst, after: {load_average()}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--senders", type=int, default=8)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=10)
    parser.add_argument("--skip-signals", action="store_true")
    parser.add_argument("--skip-fanout", action="store_true")
    parser.add_argument(
        "--slow-seconds",
        type=float,
        default=0.0,
        help="fan-out: one more subscriber whose receiver sleeps this long on each delivery (0: none)",
    )
    parser.add_argument("--py-spy", metavar="FILE", help="burst: record the gateway worker with py-spy into FILE")
    parser.add_argument(
        "--skip-burst",
        action="store_true",
        help="fan-out: skip the burst (as many events again, made while the gateway worker is stopped)",
    )
    args = parser.parse_args(argv)
    var_dir = tempfile.mkdtemp(prefix="vigil-bench-webhooks-")
    stack = databases = floor = None
    try:
        print(f"before start: {load_average()}", flush=True)
        stack, databases, backend = benchkit.start_stack(
            var_dir,
            {
                "VIGIL_PASSWORD_HASHING": "fast-for-tests",
                "VIGIL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
                "VIGIL_WEBHOOK_SWEEP_INTERVAL": "0.2",
                "VIGIL_WEBHOOK_CONCURRENCY": "16",
                "VIGIL_LOG_LEVEL": "WARNING",
            },
        )
        prefix = f"vigil_t{databases.run_id}" if backend == "postgres" else None
        api = f"{stack.gateway_url}/api/v1"
        admin = benchkit.admin_session(stack)
        location = admin.post(f"{api}/locations", json={"name": "Bench"}, timeout=30).json()["id"]
        # a station reaches only the properties its monitoring company monitors
        company = admin.post(
            f"{api}/monitoring-companies", json={"name": f"Bench Monitoring {uuid.uuid4().hex[:6]}"}, timeout=30
        ).json()["id"]
        customer = admin.post(
            f"{api}/customers",
            json={
                "kind": "customer",
                "first_name": "Bench",
                "last_name": "Signals",
                "city": "Ottawa",
                "state": "ON",
                "primary_phone": "613-555-0199",
                "account_type": "Residential",
                "location_id": location,
                "monitoring_company_id": company,
            },
            timeout=30,
        ).json()
        account = f"BENCH-{uuid.uuid4().hex[:6]}"
        prop = admin.post(
            f"{api}/customers/{customer['id']}/properties",
            json={"address": "1 Bench Road", "account_number": account},
            timeout=30,
        ).json()
        station = admin.post(
            f"{api}/integrations",
            json={"name": "Bench Station", "rate_limit_per_minute": 1_000_000, "monitoring_company_id": company},
            timeout=30,
        ).json()
        gateway_path = urlparse(f"{api}/integrations/{station['id']}/signals").path
        print(f"backend: {backend}, gateway web workers x threads: 1 x 8 (the defaults)", flush=True)

        def log_total() -> int:
            return admin.get(f"{api}/properties/{prop['id']}/signals", params={"per_page": 1}, timeout=30).json()[
                "total"
            ]

        if not args.skip_signals:
            floor, floor_url = start_floor(stack.env, station["secret"])
            floors = {"floor": floor}
            payloads = [{"account_number": account, "type": "open", "zone": "1", "user": "2"}]
            for url, path in ((stack.gateway_url, gateway_path), (floor_url, "/signals")):  # warm-up
                run_load(url, path, station["secret"], payloads, args.senders, 1.0)
            print(f"signals, before: {load_average()}", flush=True)
            before = log_total()
            accepted, rate, p50, p99, answers, cpu = measure(
                stack,
                floors,
                prefix,
                stack.gateway_url,
                gateway_path,
                station["secret"],
                payloads,
                args.senders,
                args.duration,
            )
            lost = accepted - (log_total() - before)
            f_accepted, f_rate, f_p50, f_p99, f_answers, f_cpu = measure(
                stack, floors, prefix, floor_url, "/signals", station["secret"], payloads, args.senders, args.duration
            )
            met = rate >= TARGET_RATE and p99 <= TARGET_P99_MS and lost == 0
            vigil_cpu = sum(ms for group, ms in cpu.items() if group not in ("load generator", "floor"))
            floor_cpu = sum(ms for group, ms in f_cpu.items() if group in ("floor", "postgres"))
            print(
                f"signals in: target >= {TARGET_RATE:.0f}/s, p99 <= {TARGET_P99_MS:.0f} ms, none lost; "
                f"measured {rate:.0f}/s over {args.duration:.0f} s with {args.senders} senders, p50 {p50:.1f} ms, "
                f"p99 {p99:.1f} ms, answers {answers}, accepted {accepted}, lost {lost} "
                f"(accepted but not in the signal log)  [{'met' if met else 'NOT met'}]"
            )
            print(f"  CPU ms per signal: {print_cpu(cpu)}")
            print(
                f"  floor (bare Flask, same signature check, same insert): {f_rate:.0f}/s, p50 {f_p50:.1f} ms, "
                f"p99 {f_p99:.1f} ms, answers {f_answers}; CPU ms per signal: {print_cpu(f_cpu)}"
            )
            print(
                f"  ratios to the floor: rate {rate / f_rate:.2f}x, p50 {p50 / max(f_p50, 0.001):.2f}x, "
                f"p99 {p99 / max(f_p99, 0.001):.2f}x, CPU (Vigil processes + PostgreSQL vs floor + PostgreSQL) "
                f"{vigil_cpu:.2f} / {floor_cpu:.2f} ms = {vigil_cpu / max(floor_cpu, 0.001):.2f}x"
            )
            print(f"signals, after: {load_average()}", flush=True)

        if not args.skip_fanout:
            receiver = Receiver(args.slow_seconds)
            port = receiver.server.server_address[1]
            paths = [f"/s{n}" for n in range(args.subscribers)] + (["/slow"] if args.slow_seconds else [])
            for path in paths:
                created = admin.post(
                    f"{api}/webhooks",
                    json={"url": f"http://127.0.0.1:{port}{path}", "event_types": ["property.monitoring_changed"]},
                    timeout=30,
                )
                assert created.status_code == 201, created.text
            status_path = urlparse(f"{api}/integrations/{station['id']}/account-status").path
            # the events come from 20 properties, each switched back and forth in turn
            accounts = [f"FAN-{uuid.uuid4().hex[:6]}-{n}" for n in range(20)]
            for number in accounts:
                made = admin.post(
                    f"{api}/customers/{customer['id']}/properties",
                    json={"address": "2 Bench Road", "account_number": number},
                    timeout=30,
                )
                assert made.status_code == 201, made.text
            payloads = [
                {"account_number": accounts[i % 20], "status": "suspended" if (i // 20) % 2 == 0 else "active"}
                for i in range(args.events)
            ]
            cursor = None
            while True:  # to the end of the feed as it is now
                page = admin.get(
                    f"{api}/events", params={"limit": 500} | ({"after": cursor} if cursor else {}), timeout=30
                ).json()
                if not page["items"]:
                    break
                cursor = page["next_cursor"]
            print(f"fan-out, before: {load_average()}", flush=True)
            cpu_before = cpu_by_process(stack, prefix)
            started = time.monotonic()
            _, answers, _, _ = run_load(stack.gateway_url, status_path, station["secret"], payloads, args.senders)
            produced = time.monotonic()
            expected = args.events * args.subscribers
            deadline = produced + 180
            while len(receiver.seen) < expected and time.monotonic() < deadline:
                time.sleep(0.05)
            done = receiver.last
            cpu_after = cpu_by_process(stack, prefix)
            time.sleep(2.5)  # the feed lists an event once it is 2 s old
            events, after = 0, cursor
            while True:
                page = admin.get(
                    f"{api}/events",
                    params={"limit": 500, "types": "property.monitoring_changed"} | ({"after": after} if after else {}),
                    timeout=30,
                ).json()
                if not page["items"]:
                    break
                events += len(page["items"])
                after = page["next_cursor"]
            met = len(receiver.seen) == expected == events * args.subscribers and done - started <= FANOUT_SECONDS
            print(
                f"fan-out: target all {expected} deliveries within {FANOUT_SECONDS:.0f} s; measured "
                f"{len(receiver.seen)}/{expected} delivered, {events} events in the feed (status answers {answers}); "
                f"the events made in {produced - started:.1f} s by {args.senders} senders; last delivery "
                f"{done - started:.1f} s after the first event, {max(0.0, done - produced):.1f} s after the last "
                f"({len(receiver.seen) / max(done - started, 0.001):.0f} deliveries/s)  [{'met' if met else 'NOT met'}]"
            )
            delivered = max(len(receiver.seen), 1)
            per_delivery = {
                name: (cpu_after[name] - cpu_before.get(name, 0.0)) * 1000 / delivered
                for name in cpu_after
                if cpu_after[name] - cpu_before.get(name, 0.0) >= 0.05
            }
            print(
                f"  CPU ms per delivery: {print_cpu(per_delivery)}; all: {sum(per_delivery.values()):.2f} ms "
                f"(status changes and their events included); {split_cpu(per_delivery)}"
            )
            if args.slow_seconds:
                print(
                    f"  the slow subscriber ({args.slow_seconds:.1f} s per answer) was sent {len(receiver.slow_seen)} "
                    f"deliveries meanwhile; the others' last delivery came {max(0.0, done - produced):.1f} s after "
                    f"the last event"
                )
            print(f"fan-out, after: {load_average()}", flush=True)
            if not args.skip_burst:
                # each account goes active -> in_test -> active ..., a change every time, as in the first run
                more = [
                    {**payload, "status": "in_test" if payload["status"] == "suspended" else "active"}
                    for payload in payloads
                ]
                burst(
                    stack,
                    prefix,
                    receiver,
                    lambda: run_load(stack.gateway_url, status_path, station["secret"], more, args.senders),
                    args.subscribers,
                    args.events,
                    args.py_spy,
                )
        return 0
    finally:
        benchkit.stop_stack(stack, databases, var_dir, floor)


if __name__ == "__main__":
    sys.exit(main())
