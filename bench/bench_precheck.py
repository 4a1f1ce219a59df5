"""1,000 customer creates with the ADT PreCheck on: does every PreCheck complete, and how soon?

    .venv/bin/python bench/bench_precheck.py [--count 1000] [--clients 4] [--concurrency 4] [--latency-ms 200]

Starts its own Vigil (embedded defaults, free ports, ``VIGIL_WORKER_CONCURRENCY=--concurrency``),
makes an ADT monitoring company with PreCheck Order Enabled, sets the sandbox ADT endpoint to answer
in ``--latency-ms``, then ``--clients`` clients create ``--count`` ADT customers through the gateway
(each with the ADT-required fields, so each create starts a PreCheck in the background). It then
waits for every PreCheck to finish and reports:

- how many completed (target: all, none in ``error``);
- the time from each create's answer to its PreCheck's ``completed_at``: p50, p95, max (target p95 ≤ 5 s);
- the most PreChecks the sandbox held at once (target: never more than the configured concurrency:
  the credit worker's processes are what bounds the calls to ADT).
"""

from __future__ import annotations

import argparse
import random
import secrets
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import datetime

import requests

from vigil_runner.stack import Stack

FINAL = {"approved", "declined", "manual_review", "error"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--count", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--latency-ms", type=int, default=200)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-precheck-") as var_dir:
        password = secrets.token_urlsafe(16)
        stack = Stack.from_environment(
            {
                "VIGIL_VAR_DIR": var_dir,
                "VIGIL_ADMIN_USERNAME": "admin",
                "VIGIL_ADMIN_PASSWORD": password,
                "VIGIL_LOG_LEVEL": "WARNING",
                "VIGIL_RELAY_INTERVAL": "0.1",
                "VIGIL_WORKER_CONCURRENCY": str(args.concurrency),
                "VIGIL_PASSWORD_HASHING": "fast-for-tests",
            },
            dynamic_ports=True,
            inherit_vigil_settings=False,
        )
        try:
            stack.prepare()
            stack.start()
            stack.wait_ready(timeout=180)
            return run(stack, password, args)
        finally:
            stack.stop()


def run(stack: Stack, password: str, args: argparse.Namespace) -> int:
    base, sandbox = f"{stack.gateway_url}/api/v1", stack.env["VIGIL_BUREAU_URL"]
    token = requests.post(f"{base}/auth/token", json={"username": "admin", "password": password}, timeout=15).json()
    http = requests.Session()
    http.headers["Authorization"] = f"Bearer {token['access_token']}"
    location = http.post(f"{base}/locations", json={"name": "Bench"}, timeout=15).json()["id"]
    company = http.post(
        f"{base}/monitoring-companies",
        json={"name": "ADT Bench", "is_adt": True, "precheck_order_enabled": True},
        timeout=15,
    ).json()["id"]
    requests.post(
        f"{sandbox}/sandbox/control", json={"latency_ms": args.latency_ms, "reset_max_in_flight": True}, timeout=5
    )
    created: dict[int, float] = {}
    failures: list[str] = []
    lock = threading.Lock()
    per_client = -(-args.count // args.clients)

    def client(n: int) -> None:
        session = requests.Session()
        session.headers.update(http.headers)
        for i in range(per_client):
            if n * per_client + i >= args.count:
                return
            body = {
                "kind": "customer",
                "first_name": "Bench",
                "last_name": f"Customer{n}-{i}",
                "city": "Ottawa",
                "state": "ON",
                "primary_phone": f"613-{random.randint(230, 999)}-{random.randint(0, 9999):04d}",
                "account_type": "Residential",
                "location_id": location,
                "monitoring_company_id": company,
                "ssn": f"{random.randint(100, 665)}-{random.randint(10, 99)}-{random.randint(1, 9999):04d}",
                "birthdate": "1970-01-02",
                "email": f"bench-{uuid.uuid4().hex[:12]}@example.com",
                "address_line1": "1 Bench St",
                "zip": "K1A 0B1",
                "county": "Ottawa",
            }
            response = session.post(f"{base}/customers?allow_duplicates=true", json=body, timeout=30)
            with lock:
                if response.status_code == 201:
                    created[response.json()["id"]] = time.time()
                else:
                    failures.append(f"{response.status_code}: {response.text[:200]}")

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,)) for n in range(args.clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    create_seconds = time.monotonic() - started
    results: dict[int, dict] = {}
    deadline = time.monotonic() + 600
    while len(results) < len(created) and time.monotonic() < deadline:
        for customer_id in [c for c in created if c not in results]:
            latest = http.get(f"{base}/customers/{customer_id}/precheck", timeout=15).json().get("latest")
            if latest and latest["status"] in FINAL:
                results[customer_id] = latest
        time.sleep(0.5)
    latencies = sorted(
        datetime.fromisoformat(r["completed_at"].replace("Z", "+00:00")).timestamp() - created[c]
        for c, r in results.items()
    )
    errors = sum(1 for r in results.values() if r["status"] == "error")
    peak = requests.get(f"{sandbox}/sandbox/prechecks", timeout=5).json()["max_in_flight"]
    p95 = latencies[int(0.95 * (len(latencies) - 1))] if latencies else float("nan")
    print(f"creates: {len(created)} of {args.count} in {create_seconds:.1f} s ({len(failures)} refused)")
    print(f"PreChecks finished: {len(results)} ({errors} in error)")
    if latencies:
        print(f"create → result: p50 {statistics.median(latencies):.2f} s, p95 {p95:.2f} s, max {latencies[-1]:.2f} s")
    print(f"most PreChecks at ADT at once: {peak} (worker concurrency {args.concurrency})")
    ok = (
        not failures
        and len(results) == len(created) == args.count
        and errors == 0
        and p95 <= 5.0
        and peak <= args.concurrency
    )
    print("PASS" if ok else "FAIL")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
