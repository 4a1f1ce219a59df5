"""Instructions per property read, by process, beside the floor: a measure the machine's load does not move.

    .venv/bin/python bench/count_property_read.py [--requests 400] [--connections 4] [--only property,gateway]

CPU time per request (``bench_gateway_properties.py``) moves by 20-50% between runs on a shared machine.
Instruction counts do not: this starts Vigil as that bench does (PostgreSQL when it answers,
``VIGIL_TEST_BACKEND=embedded`` for the embedded default), fills in the same property, then starts one
more copy of each serving process under ``valgrind --tool=callgrind`` (the property service, the floor
app, the gateway, the floor hop: same settings, same worker model, its own port; each in turn), warms it
up, zeroes its counters, sends ``--requests`` reads over ``--connections`` keep-alive connections and
reads the instructions its processes (gunicorn's master and worker) executed meanwhile. The gateway's
copy forwards to the stack's property service and the floor hop's to the stack's floor app, so each
count is that one process's work. Prints instructions per read and the ratios of the bench's targets.

valgrind runs a process about 50 times slower, so a count takes a minute or two per process.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import bench_gateway_properties as bench
import benchkit

from vigil_runner.stack import free_port
from vigil_shared.identity import IDENTITY_HEADER, sign_identity
from vigil_shared.testing import describe_backend

BIN = Path(sys.executable).parent


def load(url: str, path: str, headers: dict, total: int, connections: int) -> int:
    """Sends ``total`` GETs over ``connections`` keep-alive connections; the number answered 200."""
    answered = [0] * connections

    def run(index: int) -> None:
        client = bench.Client(url)
        for _ in range(total // connections):
            status, _ = client.request("GET", path, None, headers)
            answered[index] += status == 200

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(answered)


def instructions(out_dir: Path, name: str) -> int:
    """The instructions every process of ``name`` executed (callgrind's dumps at exit, master and worker)."""
    total = 0
    for dump in out_dir.glob(f"{name}.*"):
        for line in dump.read_text(errors="replace").splitlines():
            if line.startswith(("summary:", "totals:")):
                total += int(line.split()[1])
                break
    return total


def run_once(name: str, argv: list[str], env: dict, path: str, headers: dict, out_dir: Path, reads: int, args) -> int:
    """The reads answered by one process started under callgrind, sent ``args.warmup`` then ``reads``
    reads, then stopped: gunicorn's master and worker exit and callgrind writes their counts (a forked
    worker cannot be asked for a dump while it runs: ``callgrind_control`` only reaches the master)."""
    port = free_port()
    port_vars = env.get("_PORT_VARS", "")
    env = {key: value for key, value in env.items() if key != "_PORT_VARS"}
    env |= {name_var: str(port) for name_var in port_vars.split(",") if name_var}
    argv = [part.replace("{port}", str(port)) for part in argv]
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/{name}.%p", "--dump-line=no", *argv],
        env=env | {"PYTHONHASHSEED": "0"},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 900
        while bench.Client(url).request("GET", path, None, headers)[0] not in (200, 404):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{name} under valgrind did not start")
            time.sleep(1)
        load(url, path, headers, args.warmup, args.connections)
        answered = load(url, path, headers, reads, args.connections) if reads else 0
    finally:
        process.terminate()  # gunicorn's master stops its worker, then exits
        try:
            process.wait(timeout=300)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
    return answered


def count(name: str, argv: list[str], env: dict, path: str, headers: dict, out_dir: Path, args) -> tuple[float, int]:
    """Instructions per read of one process: two copies under callgrind, started and warmed up alike, one
    sent ``args.requests`` more reads than the other (at the same time: the difference is the reads')."""
    results: dict[str, int] = {}

    def one(label: str, reads: int) -> None:
        results[label] = run_once(f"{name}-{label}", argv, env, path, headers, out_dir, reads, args)

    threads = [
        threading.Thread(target=one, args=("short", 0)),
        threading.Thread(target=one, args=("long", args.requests)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    extra = instructions(out_dir, f"{name}-long") - instructions(out_dir, f"{name}-short")
    return extra / max(results.get("long", 0), 1), results.get("long", 0)


@contextmanager
def read_stack() -> Iterator[tuple]:
    """A Vigil of its own with one property to read and the floor apps beside it, stopped afterwards:
    (stack, backend, seeded data, its environment, the floor processes, the read's path, the identity
    header the property service takes)."""
    var_dir = tempfile.mkdtemp(prefix="vigil-bench-")
    stack = databases = None
    floor: dict = {}
    try:
        stack, databases, backend = bench.start_stack(var_dir)
        data = bench.seed(stack)
        env = dict(stack.env)
        floor = bench.start_floor(env)
        identity = sign_identity(
            bench._identity(data["user_id"], data["location_id"], None), env["VIGIL_INTERNAL_SECRET"], 3600
        )
        yield stack, backend, data, env, floor, f"/api/v1/properties/{data['property_id']}", identity
    finally:
        bench.stop_floor(floor)
        benchkit.stop_stack(stack, databases, var_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--only", default="floor row,property,floor hop,gateway")
    parser.add_argument("--out", default=None, help="keep callgrind's files here (for callgrind_annotate)")
    args = parser.parse_args(argv)
    out_dir = Path(args.out or tempfile.mkdtemp(prefix="vigil-callgrind-"))
    out_dir.mkdir(parents=True, exist_ok=True)
    with read_stack() as (stack, backend, data, env, floor, read_path, identity):
        gunicorn, *model = bench.floor_gunicorn(env)
        floor_argv = [gunicorn, *model, "-b", "127.0.0.1:{port}", "floor_app:create_app()"]
        direct = {IDENTITY_HEADER: identity, "Accept": "application/json"}
        bearer = {"Authorization": f"Bearer {data['token']}", "Accept": "application/json"}
        plans = {
            "floor row": (
                floor_argv,
                os.environ | {"FLOOR_ROLE": "row", "FLOOR_DATABASE_URL": bench.database_url(env, "property")},
                {},
            ),
            "floor hop": (floor_argv, os.environ | {"FLOOR_ROLE": "hop", "FLOOR_UPSTREAM": floor["floor row"][1]}, {}),
            "property": ([str(BIN / "vigil-property"), "web"], env | {"_PORT_VARS": "VIGIL_PROPERTY_PORT"}, direct),
            "gateway": ([str(BIN / "vigil-gateway"), "web"], env | {"_PORT_VARS": "VIGIL_GATEWAY_PORT"}, bearer),
        }
        print(
            f"callgrind, {describe_backend(backend)}: {args.requests} reads over {args.connections} connections "
            f"after {args.warmup} not counted; files in {out_dir}",
            flush=True,
        )
        counts = {}
        for name in [n.strip() for n in args.only.split(",")]:
            argv_, env_, headers = plans[name]
            counts[name], answered = count(name.replace(" ", "-"), argv_, env_, read_path, headers, out_dir, args)
            print(f"  {name:10} {counts[name] / 1e6:8.3f} M instructions per read ({answered} answered)", flush=True)
        row = counts.get("floor row")
        if row:
            for name, goal in (("property", bench.SERVICE_FLOOR_GOAL), ("gateway", bench.HOP_FLOOR_GOAL)):
                if name in counts:
                    print(f"  {name} / floor app: {counts[name] / row:.2f}x (CPU target {goal:g}x)")
        if "gateway" in counts and "floor hop" in counts:
            print(f"  gateway / floor hop: {counts['gateway'] / counts['floor hop']:.2f}x")
        return 0


if __name__ == "__main__":
    sys.exit(main())
