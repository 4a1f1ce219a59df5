"""Idle memory of every process of ``make run`` (embedded default), the issue's target: RSS <= 80 MB each.

    .venv/bin/python bench/bench_idle_rss.py [--settle 5] [--warm]

Starts the whole installation as ``make run`` does (the runner's ``Stack``, in a temporary
``VIGIL_VAR_DIR`` on free ports, embedded SQLite databases and broker), waits until every process
answers ``/readyz``, lets it settle, and prints for each operating-system process (a gunicorn
master and its workers are listed apart) its RSS, PSS (resident pages shared with other processes
counted in proportion) and USS (pages of its own), from ``/proc/<pid>/smaps_rollup``.

Every descendant of a started process is measured too, named by its command line: a gunicorn
worker, a Celery pool child, and the gateway worker's webhook delivery process (``vigil-gateway
deliver``, started by the worker when ``VIGIL_WEBHOOK_DELIVERY_PROCESS=1``, the default). The run
fails when that delivery process is missing, so the table never silently leaves it out. With
``--warm`` the same processes are measured again, idle once more, after some work: sign-ins,
customers and properties created, webhooks delivered (the delivery process then holds what it signs
and encrypts with).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import tempfile
import threading
import time
from pathlib import Path

import benchkit

from vigil_runner.stack import Stack

GOAL_MB = 80.0


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def descendants(pid: int, depth: int = 1) -> list[tuple[int, int, int]]:
    """(pid, parent pid, depth) of every process below ``pid``, depth first: a child's children follow it."""
    found = []
    for child in children(pid):
        found.append((child, pid, depth))
        found += descendants(child, depth + 1)
    return found


def cmdline(pid: int) -> list[str]:
    with contextlib.suppress(OSError):
        return [part.decode() for part in Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0") if part]
    return []


def label(pid: int, parent_pid: int, name: str) -> str:
    """A descendant's name: ``<name> child`` when it runs its parent's command line (a forked gunicorn
    or Celery pool worker), else ``<name> <subcommand>`` (the worker's ``vigil-gateway deliver``)."""
    argv = cmdline(pid)
    if argv and argv != cmdline(parent_pid):
        # the script may follow its interpreter (``python …/vigil-gateway deliver``)
        for at, part in enumerate(argv[:-1]):
            if Path(part).name.startswith("vigil-"):
                return f"{name} {argv[at + 1]}"
    return f"{name} child"


def memory(pid: int) -> dict[str, float]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0]) / 1024
    return {
        "rss": values["Rss"],
        "pss": values["Pss"],
        "uss": values.get("Private_Clean", 0) + values.get("Private_Dirty", 0),
    }


def measure(stack: Stack) -> list[tuple[str, int, dict[str, float]]]:
    rows = []
    for process in stack.processes:
        assert process.popen is not None, "started"
        rows.append((process.name, process.popen.pid, memory(process.popen.pid)))
        for child, parent, depth in descendants(process.popen.pid):
            rows.append((f"{'  ' * depth}{label(child, parent, process.name)}", child, memory(child)))
    if not any(name.strip() == "gateway-worker deliver" for name, _, _ in rows):
        raise SystemExit("the webhook delivery process (vigil-gateway deliver) was not found")
    return rows


def report(title: str, rows: list[tuple[str, int, dict[str, float]]]) -> int:
    """Prints the table; how many processes are over the goal."""
    print(f"{title}, {len(rows)} OS processes, load {os.getloadavg()[0]:.1f}:")
    print(f"  {'process':<28}{'pid':>8}{'RSS MB':>9}{'PSS MB':>9}{'USS MB':>9}")
    over = 0
    for name, pid, mem in rows:
        flag = "" if mem["rss"] <= GOAL_MB else "  over 80 MB"
        over += bool(flag)
        print(f"  {name:<28}{pid:>8}{mem['rss']:>9.1f}{mem['pss']:>9.1f}{mem['uss']:>9.1f}{flag}")
    print(
        f"  {'total':<36}{sum(m['rss'] for _, _, m in rows):>9.1f}{sum(m['pss'] for _, _, m in rows):>9.1f}"
        f"{sum(m['uss'] for _, _, m in rows):>9.1f}"
    )
    print(f"target: every process <= {GOAL_MB:.0f} MB RSS: {'met' if not over else f'{over} over'}")
    return over


class Receiver:
    """A local webhook receiver that counts what it is sent."""

    def __init__(self) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.received = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server naming
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                receiver.received += 1
                self.send_response(204)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def work(stack: Stack, receiver: Receiver, events: int = 20) -> None:
    """Some work for every kind of process: sign-ins and creates through the gateway (the services, their
    relays and workers; confidential values and idempotency keys, so what encrypts them is loaded), a
    webhook subscription whose deliveries the delivery process sends (so it loads what it signs and
    encrypts with), waited for until the receiver got them all."""

    api = f"{stack.gateway_url}/api/v1"
    admin = benchkit.admin_session(stack)
    port = receiver.server.server_address[1]
    hook = {"url": f"http://127.0.0.1:{port}/hook", "event_types": ["customer.created"]}
    assert admin.post(f"{api}/webhooks", json=hook, timeout=30).status_code == 201
    location = admin.post(f"{api}/locations", json={"name": "RSS bench"}, timeout=30).json()["id"]
    for n in range(events):
        customer = {
            "kind": "customer",
            "first_name": "Idle",
            "last_name": f"Memory{n}",
            "city": "Ottawa",
            "state": "ON",
            "primary_phone": f"613-555-{1000 + n:04d}",
            "account_type": "Residential",
            "location_id": location,
            # confidential values are encrypted (Fernet, so cryptography's core is loaded); a key kept
            "ssn": f"{200 + n:03d}-45-{6789 + n:04d}",
            "birthdate": "1970-01-02",
        }
        made = admin.post(
            f"{api}/customers",
            params={"allow_duplicates": "true"},
            json=customer,
            headers={"Idempotency-Key": secrets.token_hex(8)},  # its reply kept encrypted by the gateway
            timeout=30,
        )
        assert made.status_code == 201, made.text
        prop = admin.post(f"{api}/customers/{made.json()['id']}/properties", json={"address": "1 Idle"}, timeout=30)
        assert prop.status_code == 201, prop.text
    deadline = time.monotonic() + 120
    while receiver.received < events:
        if time.monotonic() > deadline:
            raise SystemExit(f"the receiver got {receiver.received} of {events} webhooks")
        time.sleep(0.2)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--settle", type=float, default=5.0, help="seconds to wait after every process is ready")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="then do some work (creates, webhooks delivered) and measure again once idle",
    )
    args = parser.parse_args(argv)
    settings = {"VIGIL_LOG_LEVEL": "WARNING"}
    if args.warm:
        settings |= {
            "VIGIL_ADMIN_USERNAME": "admin",
            "VIGIL_ADMIN_PASSWORD": secrets.token_urlsafe(16),
            "VIGIL_PASSWORD_HASHING": "fast-for-tests",  # a standard sign-in's 64 MiB would sit in the gateway
            "VIGIL_WEBHOOK_ALLOWED_NETWORKS": "127.0.0.0/8",
        }
    warm = None
    with tempfile.TemporaryDirectory() as var_dir:
        stack = Stack.from_environment(
            {"VIGIL_VAR_DIR": var_dir, **settings}, dynamic_ports=True, inherit_vigil_settings=False
        )
        stack.prepare()
        stack.start()
        try:
            stack.wait_ready()
            time.sleep(args.settle)
            idle = measure(stack)
            if args.warm:
                receiver = Receiver()
                work(stack, receiver)
                time.sleep(args.settle)
                warm = measure(stack)
                receiver.server.shutdown()
        finally:
            stack.stop()
    over = report("Idle memory of `make run` (embedded default)", idle)
    if warm is not None:
        print()
        report("The same processes idle again after some work (creates, webhooks delivered)", warm)
    return 0 if not over else 1


if __name__ == "__main__":
    sys.exit(main())
