"""Incoming signals and outgoing webhook fan-out, through the gateway, on its own Vigil.

    .venv/bin/python bench/bench_webhooks.py [--duration 10] [--threads 8] [--events 1000] [--subscribers 10]

It starts its own Vigil on free ports like the e2e suite (PostgreSQL + RabbitMQ when they answer,
the embedded defaults otherwise) and measures, one after the other:

1. **Signals in**: ``--threads`` senders post signed signals (Standard Webhooks, one integration)
   to ``POST /api/v1/integrations/{id}/signals`` for ``--duration`` seconds; it prints the rate,
   p50/p99 latency, every non-200 answer, and checks that the property's signal log holds exactly
   the accepted signals (none lost). Goal: >= 300/s with p99 <= 100 ms.
2. **Fan-out**: ``--subscribers`` subscriptions to ``property.monitoring_changed`` at a local
   receiver; ``--events`` signed status changes make as many events; it prints the time from the
   first event to the last of ``events x subscribers`` deliveries and the time after the last event
   was accepted. Goal: 1,000 events to 10 subscribers within 10 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import benchkit
import requests
from standardwebhooks.webhooks import Webhook


def signed(secret: str, payload: dict) -> tuple[str, dict]:
    body = json.dumps(payload)
    message_id = f"msg_{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    return body, {
        "webhook-id": message_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, now, body),
        "Content-Type": "application/json",
    }


def bench_signals(url: str, secret: str, account: str, duration: float, threads: int) -> tuple[int, list[float], dict]:
    latencies: list[float] = []
    outcomes: dict[int, int] = {}
    lock = threading.Lock()
    deadline = time.monotonic() + duration

    def sender() -> None:
        session = requests.Session()
        mine: list[float] = []
        counts: dict[int, int] = {}
        while time.monotonic() < deadline:
            body, headers = signed(secret, {"account_number": account, "type": "open", "zone": "1", "user": "2"})
            started = time.perf_counter()
            status = session.post(url, data=body, headers=headers, timeout=10).status_code
            mine.append(time.perf_counter() - started)
            counts[status] = counts.get(status, 0) + 1
        with lock:
            latencies.extend(mine)
            for status, count in counts.items():
                outcomes[status] = outcomes.get(status, 0) + count

    workers = [threading.Thread(target=sender) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes.get(200, 0), latencies, outcomes


class Receiver:
    def __init__(self) -> None:
        self.seen: set[tuple[str, str]] = set()
        self.last = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.seen.add((self.path, self.headers["webhook-id"]))
                    receiver.last = time.monotonic()
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--events", type=int, default=1000)
    parser.add_argument("--subscribers", type=int, default=10)
    args = parser.parse_args(argv)
    var_dir = tempfile.mkdtemp(prefix="vigil-bench-webhooks-")
    stack = databases = None
    try:
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
        api = f"{stack.gateway_url}/api/v1"
        token = requests.post(
            f"{api}/auth/token", json={"username": "admin", "password": stack.env["VIGIL_ADMIN_PASSWORD"]}, timeout=30
        ).json()["access_token"]
        admin = requests.Session()
        admin.headers["Authorization"] = f"Bearer {token}"
        location = admin.post(f"{api}/locations", json={"name": "Bench"}, timeout=30).json()["id"]
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
            f"{api}/integrations", json={"name": "Bench Station", "rate_limit_per_minute": 1_000_000}, timeout=30
        ).json()
        signals_url = f"{api}/integrations/{station['id']}/signals"
        print(f"backend: {backend}")

        # 1. signals in
        bench_signals(signals_url, station["secret"], account, 1.0, args.threads)  # warm-up
        before = admin.get(f"{api}/properties/{prop['id']}/signals", params={"per_page": 1}, timeout=30).json()["total"]
        accepted, latencies, outcomes = bench_signals(
            signals_url, station["secret"], account, args.duration, args.threads
        )
        after = admin.get(f"{api}/properties/{prop['id']}/signals", params={"per_page": 1}, timeout=30).json()["total"]
        rate = accepted / args.duration
        p50, p99 = statistics.median(latencies) * 1000, benchkit.percentile(latencies, 0.99) * 1000
        lost = accepted - (after - before)
        met = "met" if rate >= 300 and p99 <= 100 and lost == 0 else "NOT met"
        print(
            f"signals in: {rate:.0f}/s over {args.duration:.0f} s with {args.threads} senders, "
            f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, answers {outcomes}, lost {lost}"
            f"  [goal >= 300/s, p99 <= 100 ms, none lost: {met}]"
        )

        # 2. fan-out
        receiver = Receiver()
        port = receiver.server.server_address[1]
        for n in range(args.subscribers):
            created = admin.post(
                f"{api}/webhooks",
                json={"url": f"http://127.0.0.1:{port}/s{n}", "event_types": ["property.monitoring_changed"]},
                timeout=30,
            )
            assert created.status_code == 201, created.text
        status_url = f"{api}/integrations/{station['id']}/account-status"
        sender = requests.Session()
        started = time.monotonic()
        for i in range(args.events):
            body, headers = signed(
                station["secret"], {"account_number": account, "status": "suspended" if i % 2 == 0 else "active"}
            )
            assert sender.post(status_url, data=body, headers=headers, timeout=30).status_code == 200
        produced = time.monotonic()
        expected = args.events * args.subscribers
        deadline = produced + 120
        while len(receiver.seen) < expected and time.monotonic() < deadline:
            time.sleep(0.05)
        done = receiver.last
        met = "met" if len(receiver.seen) == expected and done - started <= 10 else "NOT met"
        print(
            f"fan-out: {len(receiver.seen)}/{expected} deliveries; {args.events} events made in "
            f"{produced - started:.1f} s; last delivery {done - started:.1f} s after the first event, "
            f"{max(0.0, done - produced):.1f} s after the last"
            f"  [goal: all within 10 s: {met}]"
        )
        return 0
    finally:
        benchkit.stop_stack(stack, databases, var_dir)


if __name__ == "__main__":
    sys.exit(main())
