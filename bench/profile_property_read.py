"""Where the CPU of a property read goes: py-spy samples of the property service and the gateway under load.

    .venv/bin/pip install py-spy   # a profiling tool, not a dependency of Vigil
    .venv/bin/python bench/profile_property_read.py [--duration 8] [--out /tmp/vigil-profile]

Starts Vigil as ``bench_gateway_properties`` does (PostgreSQL when it answers), loads
``GET /api/v1/properties/{id}`` direct to the property service, then through the gateway, while py-spy
samples the gunicorn worker of the process that serves it. Writes the collapsed stacks (one file per
figure, for a flame graph) and prints, for the frames that matter to a read, the share of the
worker's samples spent under them.
"""

from __future__ import annotations

import argparse
import multiprocessing
import subprocess
import sys
import tempfile
import threading
from collections import Counter
from pathlib import Path

import bench_gateway_properties as bench
import benchkit

# (label, substring of a frame "function (file:line)") — inclusive share of samples
PLACES = [
    ("identity verification (jwt.decode)", "verify_identity"),
    ("identity signing (gateway)", "signed_token"),
    ("authentication (gateway)", "authenticate ("),
    ("auth epoch query (gateway)", "epoch ("),
    ("forwarding: urllib3 call", "urlopen ("),
    ("request guards", "_guard ("),
    ("permission checks", "require ("),
    ("property query (one Core row, no session)", "read_property ("),
    ("  its autocommit connection and statement", "read_first ("),
    ("property query (ORM, writes)", "property_with_location"),
    ("pool checkout incl. pre-ping", "_checkout ("),
    ("pre-ping", "_do_ping_w_event"),
    ("session close / rollback", "close_request_session"),
    ("body building", "property_body"),
    ("marshmallow dump", "dump ("),
    ("JSON encode (flask)", "dumps ("),
    ("access log line", "_finish ("),
    ("logging handler", "emit ("),
    ("flask-smorest response wrapper", "wrapper ("),
    ("werkzeug routing", "match ("),
    ("gunicorn request parsing", "parse ("),
    ("socket send/recv", "sendall ("),
]


def worker_pids(root: int) -> list[int]:
    children = Path(f"/proc/{root}/task/{root}/children").read_text().split()
    return [int(pid) for pid in children] or [root]


def profile(pid: int, seconds: float, out: Path) -> None:
    py_spy = str(Path(sys.executable).parent / "py-spy")
    subprocess.run(
        [
            py_spy,
            "record",
            "--pid",
            str(pid),
            "--duration",
            str(int(seconds)),
            "--rate",
            "250",
            "--format",
            "raw",
            "--gil",
            "--nonblocking",
            "--output",
            str(out),
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def summarise(path: Path) -> tuple[int, Counter]:
    total, under = 0, Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        for label, needle in PLACES:
            if needle in stack:
                under[label] += int(count)
    return total, under


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=8.0)
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="vigil-profile-"))
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    var_dir = tempfile.mkdtemp(prefix="vigil-bench-")
    stack = databases = None
    try:
        stack, databases, backend = bench.start_stack(var_dir)
        data = bench.seed(stack)
        env = stack.env
        read_path = f"/api/v1/properties/{data['property_id']}"
        targets = [
            (
                "direct",
                "property",
                bench.Target(
                    "direct",
                    env["VIGIL_PROPERTY_URL"],
                    "GET",
                    read_path,
                    None,
                    secret=env["VIGIL_INTERNAL_SECRET"],
                    user_id=data["user_id"],
                    location_id=data["location_id"],
                ),
            ),
            (
                "gateway",
                "gateway",
                bench.Target("gateway", stack.gateway_url, "GET", read_path, None, bearer=data["token"]),
            ),
        ]
        processes = {p.name: p.popen.pid for p in stack.processes}
        print(f"py-spy of the serving gunicorn worker, {bench.describe_backend(backend)}; stacks in {out}")
        with multiprocessing.get_context("fork").Pool(2) as pool:
            for name, process, target in targets:
                pid = worker_pids(processes[process])[0]
                path = out / f"{name}-{process}.txt"
                sampler = threading.Timer(1.0, profile, (pid, args.duration, path))
                sampler.start()
                result = bench.measure(pool, target, 2, 4, 1.0, args.duration + 1, 0, stack)
                sampler.join()
                total, under = summarise(path)
                print(
                    f"{name}: {result.rps:.0f} req/s, {result.cpu_ms.get(process, 0):.2f} ms {process} CPU per "
                    f"request; {total} samples of the {process} worker (holding the GIL)"
                )
                for label, _ in PLACES:
                    if under[label]:
                        print(f"    {label:40}{under[label] / total:7.1%}")
        return 0
    finally:
        benchkit.stop_stack(stack, databases, var_dir)


if __name__ == "__main__":
    sys.exit(main())
