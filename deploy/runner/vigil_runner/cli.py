"""``vigil-run``: prepare and start every Vigil process, print where to reach it, keep them running.

A process that dies is logged and restarted with backoff while the others keep serving; Ctrl-C
(SIGINT), SIGTERM or a closed terminal (SIGHUP) stop everything. If this runner is killed outright,
the kernel stops its processes (see :mod:`vigil_runner.stack`).
"""

from __future__ import annotations

import signal
import sys
import time

from .stack import AlreadyRunning, Stack, tail


def main() -> int:
    stack = Stack.from_environment()
    try:
        stack.acquire_lock()  # before anything else: a second `make run` only says where the first one is
    except AlreadyRunning as exc:
        print(str(exc), file=sys.stderr)
        return 1
    env = stack.env
    database = (
        "PostgreSQL" if env.get("VIGIL_CUSTOMER_DATABASE_URL", "").startswith("postgresql") else "SQLite under var/"
    )
    broker = env.get("VIGIL_BROKER_URL") or "embedded SQLite broker (var/broker.sqlite)"
    print(f"Vigil: databases on {database}; broker {broker.split('@')[-1]}", flush=True)
    stopping = serving = False

    def request_stop(*_):
        nonlocal stopping
        stopping = True
        if not serving:  # still starting: abandon the start-up now
            raise KeyboardInterrupt

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, request_stop)
    try:
        print("Applying migrations…", flush=True)
        stack.prepare()
        print(f"Starting {1 + 3 * 4} processes (logs in {stack.log_dir})…", flush=True)
        stack.start()
        stack.wait_ready()
        print(f"\nVigil is running: {stack.gateway_url}/api/v1  (docs: {stack.gateway_url}/api/v1/docs)")
        print(stack.admin_message)
        print("Press Ctrl-C to stop.\n", flush=True)
        serving = True
        while not stopping:
            for line in stack.supervise():
                died = next((p for p in stack.processes if line.startswith(f"{p.name} (pid")), None)
                print(f"vigil-run: {line}", file=sys.stderr, flush=True)
                if died is not None:
                    print(tail(died.log_path, 10), file=sys.stderr, flush=True)
            time.sleep(0.5)
        return 0
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # noqa: BLE001 - a start-up failure is reported, then everything stops
        print(f"Vigil could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        serving = True  # a second Ctrl-C must not interrupt the stop
        print("Stopping every Vigil process…", flush=True)
        stack.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
