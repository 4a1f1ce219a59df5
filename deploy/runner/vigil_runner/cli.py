"""``vigil-run``: prepare and start every Vigil process, print where to reach it, stop all on Ctrl-C."""
from __future__ import annotations

import signal
import sys
import time

from .stack import Stack, tail


def main() -> int:
    stack = Stack.from_environment()
    env = stack.env
    database = "PostgreSQL" if env.get("VIGIL_CUSTOMER_DATABASE_URL", "").startswith("postgresql") else "SQLite under var/"
    broker = env.get("VIGIL_BROKER_URL") or "filesystem:// (var/broker)"
    print(f"Vigil: databases on {database}; broker {broker.split('@')[-1]}", flush=True)
    stopping = False

    def request_stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    try:
        print("Applying migrations…", flush=True)
        stack.prepare()
        print(f"Starting {1 + 3 * 4} processes (logs in {stack.log_dir})…", flush=True)
        stack.start()
        stack.wait_ready()
        print(f"\nVigil is running: {stack.gateway_url}/api/v1  (docs: {stack.gateway_url}/api/v1/docs)")
        print(stack.admin_message)
        print("Press Ctrl-C to stop.\n", flush=True)
        while not stopping:
            if dead := stack.dead():
                print(f"{dead[0].name} exited unexpectedly; stopping everything.\n{tail(dead[0].log_path)}",
                      file=sys.stderr)
                return 1
            time.sleep(0.5)
        return 0
    except Exception as exc:  # noqa: BLE001 - a start-up failure is reported, then everything stops
        print(f"Vigil could not start: {exc}", file=sys.stderr)
        return 1
    finally:
        print("Stopping every Vigil process…", flush=True)
        stack.stop()
        print("Stopped.", flush=True)


if __name__ == "__main__":
    sys.exit(main())
