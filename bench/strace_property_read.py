"""System calls per property read, by process, beside the floor (``strace -c`` on each serving worker).

    .venv/bin/python bench/strace_property_read.py [--requests 400] [--connections 1]

Starts Vigil as ``bench_gateway_properties.py`` does (PostgreSQL when it answers,
``VIGIL_TEST_BACKEND=embedded`` for the embedded default), fills in the same property and starts the
floor, warms every process up, then, for each of the floor app, the property service, the floor hop and
the gateway: attaches ``strace -c -f`` to its gunicorn worker, sends ``--requests`` reads, detaches and
prints the system calls per read by name. Kernel time per read follows the calls a process makes; this
says which.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from count_property_read import load, read_stack

from vigil_shared.identity import IDENTITY_HEADER
from vigil_shared.testing import describe_backend


def workers(root: int) -> list[int]:
    """The gunicorn workers (children) of ``root``, or ``root`` itself when it has none."""
    try:
        found = [int(pid) for pid in Path(f"/proc/{root}/task/{root}/children").read_text().split()]
    except OSError:
        found = []
    return found or [root]


def counted(pids: list[int], url: str, path: str, headers: dict, reads: int, connections: int) -> dict[str, float]:
    """System calls per read of ``pids`` (and their threads) while ``reads`` reads are answered."""
    out = tempfile.mktemp(prefix="vigil-strace-")  # noqa: S306 - strace writes it
    argv = ["strace", "-c", "-f", "-o", out]
    for pid in pids:
        argv += ["-p", str(pid)]
    tracer = subprocess.Popen(argv, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # strace attaches to every thread
    answered = load(url, path, headers, reads, connections)
    tracer.send_signal(signal.SIGINT)
    tracer.wait(timeout=30)
    calls: dict[str, float] = {}
    for line in Path(out).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
            calls[parts[-1]] = int(parts[3]) / max(answered, 1)
    os.unlink(out)
    return calls


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--connections", type=int, default=1)
    parser.add_argument("--only", default="floor row,property,floor hop,gateway")
    parser.add_argument("--trace", default=None, help="also write each process's calls for 3 reads into this folder")
    args = parser.parse_args(argv)
    with read_stack() as (stack, backend, data, env, floor, path, identity):
        by_name = {process.name: process.popen.pid for process in stack.processes}
        plans = {
            "floor row": (floor["floor row"][0].pid, floor["floor row"][1], {}),
            "property": (by_name["property"], env["VIGIL_PROPERTY_URL"], {IDENTITY_HEADER: identity}),
            "floor hop": (floor["floor hop"][0].pid, floor["floor hop"][1], {}),
            "gateway": (by_name["gateway"], stack.gateway_url, {"Authorization": f"Bearer {data['token']}"}),
        }
        print(f"strace -c, {describe_backend(backend)}: {args.requests} reads over {args.connections} connection(s)")
        for name in [n.strip() for n in args.only.split(",")]:
            root, url, headers = plans[name]
            headers = headers | {"Accept": "application/json"}
            load(url, path, headers, 100, args.connections)  # warm-up
            calls = counted(workers(root), url, path, headers, args.requests, args.connections)
            listed = ", ".join(f"{call} {n:.2f}" for call, n in sorted(calls.items(), key=lambda i: -i[1]) if n >= 0.01)
            print(f"  {name:10} {sum(calls.values()):6.2f} calls per read: {listed}", flush=True)
            if args.trace:
                out = f"{args.trace}/{name.replace(' ', '-')}.strace"
                argv_ = ["strace", "-f", "-s", "120", "-o", out]
                for pid in workers(root):
                    argv_ += ["-p", str(pid)]
                tracer = subprocess.Popen(argv_, stderr=subprocess.DEVNULL)
                time.sleep(1.0)
                load(url, path, headers, 3, 1)
                tracer.send_signal(signal.SIGINT)
                tracer.wait(timeout=30)
        return 0


if __name__ == "__main__":
    sys.exit(main())
