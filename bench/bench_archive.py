"""Archiving a big family end to end (issue 13): a parent with ``--subs`` sub-customers, each with a
property and 2 future appointments, 2 recurring invoices and 1 future scheduled payment, archived
through the gateway on RabbitMQ + PostgreSQL; the progress is polled while it runs.

    .venv/bin/python bench/bench_archive.py [--subs 100] [--broker rabbitmq|embedded]

Target: the operation has succeeded within 5 s of the 202, every item cancelled.
(A sub-customer's payments are taken on its parent, so each sub's scheduled payment is set up before
it is linked to the parent, as a customer who already paid on its own and then joined a parent.)
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

            processor = stack.env["VIGIL_PROCESSOR_URL"]
            today = datetime.now(UTC).date()

            def ok(response: requests.Response) -> dict:
                assert response.status_code in (200, 201), response.text
                return response.json()

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
                }
                customer_id = ok(http.post(f"{base}/api/v1/customers?allow_duplicates=true", json=body, timeout=30))[
                    "id"
                ]
                card = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2099, "holder": "Bench"}
                token = ok(requests.post(f"{processor}/v1/tokens", json=card, timeout=30))["token"]
                method = ok(
                    http.post(
                        f"{base}/api/v1/customers/{customer_id}/billing-methods", json={"token": token}, timeout=30
                    )
                )["id"]
                due = (today + timedelta(days=15)).isoformat()
                ok(
                    http.post(
                        f"{base}/api/v1/customers/{customer_id}/scheduled-payments",
                        json={"billing_method_id": method, "amount": 2999, "due_date": due},
                        timeout=30,
                    )
                )
                if parent_id is not None:
                    link = {"parent_customer_id": parent_id}
                    ok(http.patch(f"{base}/api/v1/customers/{customer_id}", json=link, timeout=30))
                for days in (5, 12):
                    ok(
                        http.post(
                            f"{base}/api/v1/customers/{customer_id}/recurring-invoices",
                            json={
                                "lines": [{"description": "Monitoring", "unit_price": 2999}],
                                "start_date": (today + timedelta(days=days)).isoformat(),
                            },
                            timeout=30,
                        )
                    )
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
            cancelled: dict[str, int] = {}
            for step in operation["steps"]:
                for item in (step.get("result") or {}).get("cancelled", []):
                    cancelled[item["type"]] = cancelled.get(item["type"], 0) + 1
            expected = {
                "appointment": 2 * (args.subs + 1),
                "recurring_invoice": 2 * (args.subs + 1),
                "scheduled_payment": args.subs + 1,
            }
            print(f"   cancelled {cancelled} in {operation['progress']['total']} steps")
            good = operation["status"] == "succeeded" and elapsed <= TARGET and cancelled == expected
            print(
                f"== archive of 1 + {args.subs} customers: {elapsed:.2f}s (target {TARGET}s) "
                f"{'OK' if good else 'MISSED'}"
            )
            return 0 if good else 1
        finally:
            benchkit.stop_stack(stack, databases)
            benchkit.delete_queues(prefix)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
