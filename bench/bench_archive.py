"""Archiving a big family end to end (issue 13): a parent with ``--subs`` sub-customers, each with a
property and two future appointments (and, once billing joins, 2 recurring invoices and 1 scheduled
payment), archived through the gateway on RabbitMQ + PostgreSQL; the progress is polled while it runs.

    .venv/bin/python bench/bench_archive.py [--subs 100] [--broker rabbitmq|embedded]

Target: the operation has succeeded within 5 s of the 202.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import benchkit
import requests
from bench_pipeline import start

TARGET = 5.0


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subs", type=int, default=100)
    parser.add_argument("--broker", default="rabbitmq")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="vigil-bench-archive-") as var_dir:
        stack, databases, prefix = start(args.broker, var_dir)
        try:
            base = stack.gateway_url
            http = requests.Session()
            token = http.post(
                f"{base}/api/v1/auth/token",
                json={"username": "admin", "password": stack.env["VIGIL_ADMIN_PASSWORD"]},
                timeout=30,
            ).json()["access_token"]
            http.headers["Authorization"] = f"Bearer {token}"
            location = http.post(f"{base}/api/v1/locations", json={"name": "Bench archive"}, timeout=30).json()["id"]

            def customer(parent_id: int | None, n: int) -> int:
                body = {
                    "kind": "customer",
                    "first_name": "Bench",
                    "last_name": f"Sub{n}",
                    "city": "Ottawa",
                    "state": "ON",
                    "primary_phone": f"613-555-{n:04d}",
                    "account_type": "Residential",
                    "location_id": location,
                    "parent_customer_id": parent_id,
                }
                created = http.post(f"{base}/api/v1/customers?allow_duplicates=true", json=body, timeout=30)
                created.raise_for_status()
                customer_id = created.json()["id"]
                prop = http.post(f"{base}/api/v1/customers/{customer_id}/properties", json={}, timeout=30).json()["id"]
                for days in (10, 20):
                    begins = datetime.now(UTC) + timedelta(days=days)
                    http.post(
                        f"{base}/api/v1/properties/{prop}/appointments",
                        json={
                            "type": "service",
                            "starts_at": begins.isoformat(),
                            "ends_at": (begins + timedelta(hours=1)).isoformat(),
                        },
                        timeout=30,
                    ).raise_for_status()
                return customer_id

            parent = customer(None, 0)
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(lambda n: customer(parent, n), range(1, args.subs + 1)))
            time.sleep(2)  # let the creation events drain first
            started = time.monotonic()
            answer = http.post(f"{base}/api/v1/customers/{parent}/archive", json={"confirm": True}, timeout=30)
            answer.raise_for_status()
            location_url = f"{base}{answer.headers['Location']}"
            while True:
                operation = http.get(location_url, timeout=30).json()
                print(f"   {time.monotonic() - started:5.2f}s {operation['status']} {operation['progress']}")
                if operation["status"] in ("succeeded", "failed"):
                    break
                time.sleep(0.25)
            elapsed = time.monotonic() - started
            ok = operation["status"] == "succeeded" and elapsed <= TARGET
            print(
                f"== archive of 1 + {args.subs} customers: {elapsed:.2f}s (target {TARGET}s) {'OK' if ok else 'MISSED'}"
            )
            return 0 if ok else 1
        finally:
            benchkit.stop_stack(stack, databases)
            benchkit.delete_queues(prefix)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
