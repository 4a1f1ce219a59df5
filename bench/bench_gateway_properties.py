"""Throughput and latency of property reads and of the technician lookup: through the gateway and direct.

    .venv/bin/python bench/bench_gateway_properties.py [--duration 4] [--processes 2] [--threads 4] [--only-read]

It starts its own Vigil on free ports, like the e2e suite (PostgreSQL + RabbitMQ when they answer,
the embedded defaults otherwise; ``VIGIL_TEST_BACKEND`` forces one), fills in one monitored property,
then measures, one after the other and with the same load:

- ``GET /api/v1/properties/{id}``: through the gateway (bearer token) and on the property service's
  own port with an identity header signed here, as the gateway would;
- the technician lookup: ``POST /api/v1/tech/lookup`` through the gateway (the property service's
  verification, the customer service's emergency contacts and an audit entry), the property
  service's ``POST /api/v1/tech/verify`` reached directly, and, as the like-for-like baseline of
  the aggregate, that verification followed by the emergency-contacts call, both made directly.

Beside the property read it measures, in the same run and on the same database, its floor
(``bench/floor_app.py``): a minimal Flask + SQLAlchemy app serving the same row as the same JSON, and
a minimal forwarding hop (bare Flask + one pooled call) in front of it, each its own gunicorn
process with the service's worker model. Every Vigil figure is printed as a ratio to its floor: CPU
per request of each process (``/proc/<pid>/stat``, the process and its workers), p50 and p99. On a
shared machine the CPU per request and the ratios are the figures to trust, not the throughput.
With ``--rounds`` 2 or more, every other round runs in the reverse order and each ratio is also taken
within each round (a figure and its floor measured seconds apart, under about the same load) and
printed as its median and range over the rounds.

Lookups are rate limited per client address (20 a minute), so the load plays many technicians: every
20 lookups come from another address (``X-Forwarded-For``, trusted for one proxy hop here; in the
signed identity for direct calls). Each figure is requests per second over the measured window and
the 50th/99th percentile latency; the gateway's share of the direct throughput is printed for each.
"""

from __future__ import annotations

import argparse
import http.client
import json
import multiprocessing
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import benchkit

from vigil_runner.stack import Stack, free_port
from vigil_shared.identity import IDENTITY_HEADER, Identity, service_identity, sign_identity
from vigil_shared.testing import TestDatabases, describe_backend

LOOKUPS_PER_ADDRESS = 20  # the property service's limit per client address and minute
GOAL = 0.70  # through the gateway, at least this share of the direct throughput
FLOOR_SHARE = ("the bare floor hop", "floor hop", "floor row")  # the same share without Vigil
SERVICE_FLOOR_GOAL = 1.5  # the property service's CPU per read, at most this many times the floor app's
HOP_FLOOR_GOAL = 1.0  # the gateway's CPU per forwarded read, at most the floor app's (forwarding <= serving)
# What the benchmark's technician holds at the bench location: an office or field user, who sees the
# PIN and system passwords masked (an unmasked read would add an audit write to every call).
BENCH_PERMISSIONS = ("properties.view", "equipment.view", "appointments.view", "tech_portal.use")


# --- a small keep-alive HTTP client -------------------------------------------------------------


class Client:
    """One keep-alive connection (what a pooled client or a browser keeps open)."""

    def __init__(self, base_url: str):
        parsed = urlparse(base_url)
        self.host, self.port = parsed.hostname, parsed.port
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None):
        try:
            self.conn.request(method, path, body=body, headers=headers or {})
            response = self.conn.getresponse()
            return response.status, response.read()
        except (http.client.HTTPException, OSError):
            self.conn.close()
            self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            return 599, b""


def call(base_url: str, method: str, path: str, body=None, headers=None) -> tuple[int, dict]:
    all_headers = {"Content-Type": "application/json"} | (headers or {})
    status, data = Client(base_url).request(
        method, path, json.dumps(body).encode() if body is not None else None, all_headers
    )
    return status, (json.loads(data) if data else {})


# --- the load -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """What one measurement sends: where, how, and how each request is signed."""

    name: str
    base_url: str
    method: str
    path: str
    body: bytes | None
    bearer: str | None = None  # through the gateway
    secret: str | None = None  # direct: identity signed here
    user_id: int = 0
    location_id: int = 0
    vary_address: bool = False  # tech lookups: a new client address every LOOKUPS_PER_ADDRESS requests
    then_url: str | None = None  # direct pair: after a 200, also GET this (the emergency contacts)


def _address(worker: int, thread: int, round_: int, count: int) -> str:
    """A distinct address per measurement, process, thread and run of LOOKUPS_PER_ADDRESS requests."""
    serial = ((round_ % 32 * 16 + worker % 16) * 16 + thread % 16) * 2048 + (count // LOOKUPS_PER_ADDRESS) % 2048
    return f"10.{(serial >> 16) & 255}.{(serial >> 8) & 255}.{serial & 255}"


def _identity(user_id: int, location_id: int, address: str | None) -> Identity:
    """The identity the gateway passes on for the bench user."""
    return Identity(
        subject=str(user_id),
        username="bench-tech",
        kind="user",
        locations={location_id: frozenset(BENCH_PERMISSIONS)},
        client_ip=address,
    )


def _thread_load(
    target: Target, deadline: float, start: float, worker: int, thread: int, round_: int, latencies: list, outcome: dict
) -> None:
    client = Client(target.base_url)
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if target.bearer:
        headers["Authorization"] = f"Bearer {target.bearer}"
    tokens: dict[str | None, tuple[float, str]] = {}
    follow = Client(target.then_url) if target.then_url else None
    follow_path = urlparse(target.then_url).path + "?" + urlparse(target.then_url).query if follow else ""
    follow_headers: dict[str, str] = {}
    follow_signed_at = 0.0
    count = errors = 0
    while True:
        now = time.perf_counter()
        if now >= deadline:
            break
        address = _address(worker, thread, round_, count) if target.vary_address else None
        if target.secret:
            signed = tokens.get(address)
            if signed is None or now - signed[0] > 30:  # identity tokens live 60 s
                signed = (now, sign_identity(_identity(target.user_id, target.location_id, address), target.secret, 60))
                tokens = {address: signed}
            headers[IDENTITY_HEADER] = signed[1]
        elif address:
            headers["X-Forwarded-For"] = address
        began = time.perf_counter()
        status, _ = client.request(target.method, target.path, target.body, headers)
        if follow is not None and status == 200:
            if now - follow_signed_at > 30:
                follow_signed_at = now
                follow_headers = {
                    IDENTITY_HEADER: sign_identity(service_identity("gateway", {"contacts.view"}), target.secret, 60),
                    "Accept": "application/json",
                }
            status, _ = follow.request("GET", follow_path, None, follow_headers)
        ended = time.perf_counter()
        if began >= start:  # the warm-up's answers are not counted
            if status == 200:
                latencies.append(ended - began)
            else:
                errors += 1
        count += 1
    outcome["errors"] = outcome.get("errors", 0) + errors


def _process_load(args) -> tuple[list[float], int]:
    target, threads, warmup, duration, worker, round_ = args
    start = time.perf_counter() + warmup
    deadline = start + duration
    latencies: list[float] = []
    outcome: dict = {}
    workers = [
        threading.Thread(target=_thread_load, args=(target, deadline, start, worker, t, round_, latencies, outcome))
        for t in range(threads)
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return latencies, outcome.get("errors", 0)


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    errors: int
    cpu_ms: dict  # CPU milliseconds per answered request, by process group


def measure(
    pool,
    target: Target,
    processes: int,
    threads: int,
    warmup: float,
    duration: float,
    round_: int,
    stack: Stack,
    database_prefix: str | None = None,
    floors: dict | None = None,
) -> Result:
    load_pids = {child.pid for child in multiprocessing.active_children()}
    jobs = pool.map_async(_process_load, [(target, threads, warmup, duration, w, round_) for w in range(processes)])
    time.sleep(warmup)  # the CPU is counted over the measured window only
    before = cpu_by_group(stack, load_pids, database_prefix, floors)
    time.sleep(duration)
    after = cpu_by_group(stack, load_pids, database_prefix, floors)
    parts = jobs.get()
    latencies = sorted(lat for part, _ in parts for lat in part)
    errors = sum(err for _, err in parts)
    if not latencies:
        return Result(0.0, float("nan"), float("nan"), errors, {})
    cpu = {group: max(0.0, after.get(group, 0.0) - before.get(group, 0.0)) * 1000 / len(latencies) for group in after}
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))]
    return Result(len(latencies) / duration, statistics.median(latencies) * 1000, p99 * 1000, errors, cpu)


# --- where the CPU goes: per-request CPU time of each process, from /proc ------------------------

CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat(pid: int) -> tuple[str, int, float] | None:
    """(command, parent pid, CPU seconds) of a live process."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            raw = handle.read()
    except OSError:
        return None
    command = raw[raw.index("(") + 1 : raw.rindex(")")]
    fields = raw[raw.rindex(")") + 2 :].split()
    return command, int(fields[1]), (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def _serves(pid: int, database_prefix: str) -> bool:
    """A PostgreSQL backend connected to one of this run's databases (its title names the database)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return database_prefix.encode() in handle.read()
    except OSError:
        return False


def cpu_by_group(
    stack: Stack, load_pids: set[int], database_prefix: str | None, floors: dict | None = None
) -> dict[str, float]:
    """CPU seconds so far of the gateway, property and customer web processes (with their workers), the
    other Vigil processes, the floor processes (``floors``: name → Popen), the PostgreSQL backends
    serving this run's databases and the load generator."""
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (stat := _stat(int(entry))) is not None:
            stats[int(entry)] = stat
    children: dict[int, list[int]] = {}
    for pid, (_, parent, _) in stats.items():
        children.setdefault(parent, []).append(pid)

    def tree(root: int) -> list[int]:
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            found.append(pid)
            todo.extend(children.get(pid, []))
        return found

    groups: dict[str, float] = {}
    roots = [
        (process.name if process.name in ("gateway", "property", "customer") else "other vigil", process.popen.pid)
        for process in stack.processes
    ]
    roots += [(name, popen.pid) for name, popen in (floors or {}).items()]
    for group, root in roots:
        for pid in tree(root):
            if pid in stats:
                groups[group] = groups.get(group, 0.0) + stats[pid][2]
    if database_prefix:
        groups["postgres"] = sum(
            cpu
            for pid, (command, _, cpu) in stats.items()
            if command.startswith("postgres") and _serves(pid, database_prefix)
        )
    groups["load generator"] = sum(stats[pid][2] for pid in load_pids if pid in stats)
    return groups


# --- the installation under test ----------------------------------------------------------------


def start_stack(var_dir: str) -> tuple[Stack, TestDatabases, str]:
    return benchkit.start_stack(var_dir, {"VIGIL_TRUSTED_PROXY_HOPS": "1"})


def seed(stack: Stack) -> dict:
    """A location, a customer with an emergency contact, and a property with a system, equipment and a visit."""
    gateway = stack.gateway_url
    status, token = call(
        gateway, "POST", "/api/v1/auth/token", {"username": "admin", "password": stack.env["VIGIL_ADMIN_PASSWORD"]}
    )
    assert status == 200, token
    auth = {"Authorization": f"Bearer {token['access_token']}"}

    def post(path, body):
        status, answer = call(gateway, "POST", path, body, auth)
        assert status == 201, (path, status, answer)
        return answer

    location = post("/api/v1/locations", {"name": "Bench Office"})
    customer_path = "/api/v1/customers?allow_duplicates=true"
    customer = post(
        customer_path,
        {
            "kind": "customer",
            "first_name": "Bench",
            "last_name": "Mark",
            "city": "Ottawa",
            "state": "ON",
            "primary_phone": "613-555-0123",
            "account_type": "residential",
            "location_id": location["id"],
        },
    )
    post(
        f"/api/v1/customers/{customer['id']}/contacts",
        {"type": "emergency", "name": "Nora Neighbour", "phones": [{"label": "mobile", "number": "613-555-0177"}]},
    )
    prop = post(
        f"/api/v1/customers/{customer['id']}/properties",
        {
            "account_number": "BENCH-1",
            "pin": "2468",
            "address": "1 Bench Street",
            "city": "Ottawa",
            "system_type": "DSC 1832",
            "access": {"managed_by": "tenant", "name": "Tina Tenant"},
        },
    )
    kind = post("/api/v1/system-kinds", {"name": "DSC PowerSeries"})
    post(
        f"/api/v1/properties/{prop['id']}/systems",
        {"kind_id": kind["id"], "ip_address": "10.0.0.7", "password": "5555"},
    )
    post(f"/api/v1/properties/{prop['id']}/equipment", {"item": "Keypad", "zone": "1"})
    post(
        f"/api/v1/properties/{prop['id']}/appointments",
        {"type": "service", "starts_at": "2030-01-02T09:00:00Z", "ends_at": "2030-01-02T10:00:00Z", "technician_id": 1},
    )
    role = post("/api/v1/roles", {"name": "Bench technician", "permissions": list(BENCH_PERMISSIONS)})
    password = secrets.token_urlsafe(18)
    user = post(
        "/api/v1/users",
        {
            "username": "bench-tech",
            "password": password,
            "grants": [{"role_id": role["id"], "location_id": location["id"]}],
        },
    )
    status, signed_in = call(gateway, "POST", "/api/v1/auth/token", {"username": "bench-tech", "password": password})
    assert status == 200, signed_in
    return {
        "token": signed_in["access_token"],
        "user_id": user["id"],
        "property_id": prop["id"],
        "location_id": location["id"],
        "customer_id": customer["id"],
    }


# --- the floor: the same row served by the least a Flask process can do (bench/floor_app.py) --------

BENCH_DIR = Path(__file__).resolve().parent


def database_url(env: dict, name: str) -> str:
    """The database a Vigil process of this stack uses (the embedded default unless set)."""
    return env.get(f"VIGIL_{name.upper()}_DATABASE_URL") or f"sqlite:///{env['VIGIL_VAR_DIR']}/{name}.db"


# The worker class Vigil's web processes run (vigil_shared.runtime.run_gunicorn): gunicorn's gthread with
# problem+json refusals and a heartbeat at most once a second. The floor runs the same one, so a ratio to
# the floor compares what the app does, not the server loop around it.
SERVICE_WORKER_CLASS = "vigil_shared.gunicorn_worker.ProblemThreadWorker"


def floor_gunicorn(env: dict, worker_class: str = SERVICE_WORKER_CLASS) -> list[str]:
    """gunicorn serving ``bench/floor_app.py`` with the services' worker model (worker class, workers, threads)."""
    return [
        str(Path(sys.executable).parent / "gunicorn"),
        "-k",
        worker_class,
        "-w",
        env.get("VIGIL_WEB_WORKERS", "1"),
        "--threads",
        env.get("VIGIL_WEB_THREADS", "8"),
        "--chdir",
        str(BENCH_DIR),
        "--log-level",
        "warning",
    ]


def start_floor(env: dict, worker_class: str = SERVICE_WORKER_CLASS) -> dict[str, tuple[subprocess.Popen, str]]:
    """The floor app on the property database and the floor hop in front of it: name → (process, base URL).

    Each runs under gunicorn with the service's worker model (Vigil's gthread worker, the same workers and
    threads) unless ``worker_class`` names another, to compare gunicorn's worker models on the floor itself.
    """
    gunicorn, *model = floor_gunicorn(env, worker_class)
    row_url, hop_url = f"http://127.0.0.1:{free_port()}", f"http://127.0.0.1:{free_port()}"
    roles = {
        "floor row": (row_url, {"FLOOR_ROLE": "row", "FLOOR_DATABASE_URL": database_url(env, "property")}),
        "floor hop": (hop_url, {"FLOOR_ROLE": "hop", "FLOOR_UPSTREAM": row_url}),
    }
    started = {}
    for name, (url, role_env) in roles.items():
        argv = [gunicorn, *model, "-b", urlparse(url).netloc, "floor_app:create_app()"]
        started[name] = (
            subprocess.Popen(argv, env=os.environ | role_env, start_new_session=True, stdout=subprocess.DEVNULL),
            url,
        )
    deadline = time.monotonic() + 60
    for name, (popen, url) in started.items():
        while Client(url).request("GET", "/api/v1/properties/0")[0] != 404:
            if popen.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the {name} did not start")
            time.sleep(0.2)
    return started


def stop_floor(started: dict) -> None:
    for popen, _ in started.values():
        popen.terminate()
    for popen, _ in started.values():
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            popen.kill()


def same_json(floor_url: str, property_url: str, path: str, headers: dict) -> str:
    """Whether the floor answers what the service answers (an empty string), or what differs."""
    _, floor = Client(floor_url).request("GET", path)
    _, service = Client(property_url).request("GET", path, None, headers)
    floor_body, service_body = json.loads(floor), json.loads(service)
    differs = sorted(
        key
        for key in floor_body.keys() | service_body.keys()
        if floor_body.get(key, "<absent>") != service_body.get(key, "<absent>")
    )
    return ", ".join(differs)


def _cpu(result: Result, group: str) -> float:
    return result.cpu_ms.get(group, 0.0)


def _ratio(value: float, floor: float) -> str:
    return f"{value / floor:.2f}x" if floor > 0 else "n/a"


def print_floor_ratios(best: dict[str, Result]) -> list[bool]:
    """Every Vigil figure of the read beside its floor; returns whether each CPU target is met."""
    row, hop, direct, gateway = best["floor row"], best["floor hop"], best["direct"], best["gateway"]
    service_cpu, gateway_cpu = _cpu(direct, "property"), _cpu(gateway, "gateway")
    row_cpu, hop_cpu = _cpu(row, "floor row"), _cpu(hop, "floor hop")
    service_ok = row_cpu > 0 and service_cpu / row_cpu <= SERVICE_FLOOR_GOAL
    hop_ok = row_cpu > 0 and gateway_cpu / row_cpu <= HOP_FLOOR_GOAL
    print("  against the floor measured in this run (CPU ms per request of the process; ratio):")
    print(
        f"    property service {service_cpu:.2f} vs floor app {row_cpu:.2f}: {_ratio(service_cpu, row_cpu)}"
        f" ({'meets' if service_ok else 'misses'} the {SERVICE_FLOOR_GOAL:g}x target)"
    )
    print(
        f"    gateway {gateway_cpu:.2f} vs floor app {row_cpu:.2f}: {_ratio(gateway_cpu, row_cpu)}"
        f" ({'meets' if hop_ok else 'misses'} the {HOP_FLOOR_GOAL:g}x target);"
        f" vs floor hop {hop_cpu:.2f}: {_ratio(gateway_cpu, hop_cpu)}"
    )
    print(
        f"    property behind the gateway {_cpu(gateway, 'property'):.2f} vs floor app behind the hop "
        f"{_cpu(hop, 'floor row'):.2f}: {_ratio(_cpu(gateway, 'property'), _cpu(hop, 'floor row'))}"
    )
    for name, vigil, floor in (("direct", direct, row), ("gateway", gateway, hop)):
        whole, floor_whole = sum(vigil.cpu_ms.values()), sum(floor.cpu_ms.values())
        print(
            f"    {name}: whole machine {whole:.2f} vs {floor_whole:.2f}: {_ratio(whole, floor_whole)};"
            f" p50 {vigil.p50_ms:.2f} vs {floor.p50_ms:.2f}: {_ratio(vigil.p50_ms, floor.p50_ms)};"
            f" p99 {vigil.p99_ms:.2f} vs {floor.p99_ms:.2f}: {_ratio(vigil.p99_ms, floor.p99_ms)}"
        )
    return [service_ok, hop_ok]


# (label, Vigil measurement, its process, floor measurement, its process) of each ratio paired by round
PAIRED = (
    ("property / floor app", "direct", "property", "floor row", "floor row"),
    ("gateway / floor app", "gateway", "gateway", "floor row", "floor row"),
    ("gateway / floor hop", "gateway", "gateway", "floor hop", "floor hop"),
    ("property behind the gateway / floor app behind the hop", "gateway", "property", "floor hop", "floor row"),
)


def paired(values: list[float]) -> str:
    """The median of per-round ratios and their range."""
    if not values:
        return "n/a"
    return f"median {statistics.median(values):.2f}x (range {min(values):.2f}-{max(values):.2f}x, {len(values)} rounds)"


def print_paired_ratios(rounds: dict[str, list[Result]]) -> None:
    """Each ratio of CPU per read taken within one round (a Vigil figure and its floor measured seconds
    apart, under about the same load), then its median and range over the rounds; and the throughput
    share likewise. The best-round figures above take each side's least-CPU round on its own, which may
    come from different loads."""
    print("  paired by round (each ratio within one round; the load moves less within a round than across):")
    count = min(len(results) for results in rounds.values())
    for label, vigil, vigil_group, floor, floor_group in PAIRED:
        ratios = [
            _cpu(rounds[vigil][i], vigil_group) / _cpu(rounds[floor][i], floor_group)
            for i in range(count)
            if _cpu(rounds[floor][i], floor_group) > 0
        ]
        print(f"    {label}: {paired(ratios)}")
    for label, through, straight in (("through the gateway", "gateway", "direct"), FLOOR_SHARE):
        if through not in rounds or straight not in rounds:
            continue
        shares = [rounds[through][i].rps / rounds[straight][i].rps for i in range(count) if rounds[straight][i].rps]
        if shares:
            print(
                f"    {label}: median {statistics.median(shares):.0%} of {straight}"
                f" (range {min(shares):.0%}-{max(shares):.0%})"
            )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=4.0, help="seconds measured per figure")
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of load before each measurement")
    parser.add_argument("--processes", type=int, default=2, help="client processes")
    parser.add_argument("--threads", type=int, default=4, help="connections (threads) per client process")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measure each figure this many times (every other round in the reverse order), keep the round with"
        " the least CPU per request; from 2, also print each ratio taken within a round (median and range)",
    )
    parser.add_argument("--only-read", action="store_true", help="the property read and its floor only")
    parser.add_argument(
        "--floor-worker-class",
        default=SERVICE_WORKER_CLASS,
        help="gunicorn worker class of the floor processes (default: the one Vigil's web processes run;"
        " gthread for gunicorn's own, sync, gevent if installed)",
    )
    args = parser.parse_args(argv)

    var_dir = tempfile.mkdtemp(prefix="vigil-bench-")
    stack = databases = None
    floor: dict = {}
    try:
        stack, databases, backend = start_stack(var_dir)
        data = seed(stack)
        env = stack.env
        floor = start_floor(env, args.floor_worker_class)
        floor_pids = {name: popen for name, (popen, _) in floor.items()}
        property_url = env["VIGIL_PROPERTY_URL"]
        secret = env["VIGIL_INTERNAL_SECRET"]
        lookup = json.dumps({"account_number": "BENCH-1", "pin": "2468"}).encode()
        read_path = f"/api/v1/properties/{data['property_id']}"
        pairs = [
            (
                "GET /api/v1/properties/{id}",
                [
                    Target("floor row", floor["floor row"][1], "GET", read_path, None),
                    Target(
                        "direct",
                        property_url,
                        "GET",
                        read_path,
                        None,
                        secret=secret,
                        user_id=data["user_id"],
                        location_id=data["location_id"],
                    ),
                    Target("floor hop", floor["floor hop"][1], "GET", read_path, None),
                    Target("gateway", stack.gateway_url, "GET", read_path, None, bearer=data["token"]),
                ],
            ),
        ]
        if not args.only_read:
            verify = (property_url, "POST", "/api/v1/tech/verify", lookup)
            signed = {
                "secret": secret,
                "user_id": data["user_id"],
                "location_id": data["location_id"],
                "vary_address": True,
            }
            pairs.append(
                (
                    "technician lookup",
                    [
                        Target("direct", *verify, **signed),
                        Target(
                            "direct+contacts",
                            *verify,
                            **signed,
                            then_url=f"{env['VIGIL_CUSTOMER_URL']}/api/v1/customers/{data['customer_id']}/contacts"
                            "?type=emergency&per_page=100",
                        ),
                        Target(
                            "gateway",
                            stack.gateway_url,
                            "POST",
                            "/api/v1/tech/lookup",
                            lookup,
                            bearer=data["token"],
                            vary_address=True,
                        ),
                    ],
                )
            )
        connections = args.processes * args.threads
        print(
            f"vigil bench: {os.cpu_count()} CPU(s), {describe_backend(backend)}, "
            f"{args.processes} client process(es) x {args.threads} connection(s), "
            f"{args.duration:g} s measured after {args.warmup:g} s warm-up per figure, "
            f"gunicorn {env.get('VIGIL_WEB_WORKERS', '1')} worker(s) x {env.get('VIGIL_WEB_THREADS', '8')} threads"
            f" (floor: {args.floor_worker_class})",
            flush=True,
        )
        identity = sign_identity(_identity(data["user_id"], data["location_id"], None), secret, 60)
        differs = same_json(floor["floor row"][1], property_url, read_path, {IDENTITY_HEADER: identity})
        print(
            f"the floor app answers {'the same JSON as' if not differs else 'other JSON than'} the property service"
            + (f" (differs in: {differs})" if differs else "")
        )
        print(f"{'':40}{'req/s':>10}{'p50 ms':>10}{'p99 ms':>10}{'errors':>8}")
        shares, targets_met = [], []
        with multiprocessing.get_context("fork").Pool(args.processes) as pool:
            for title, targets in pairs:
                print(title, flush=True)
                best: dict[str, Result] = {}
                rounds: dict[str, list[Result]] = {target.name: [] for target in targets}
                for round_ in range(args.rounds):
                    # every other round in the reverse order: a load that rises or falls through a round
                    # weighs on the figures measured first in one round and last in the next alike
                    for target in targets if round_ % 2 == 0 else targets[::-1]:
                        result = measure(
                            pool,
                            target,
                            args.processes,
                            args.threads,
                            args.warmup,
                            args.duration,
                            round_ * len(targets) + targets.index(target),
                            stack,
                            f"vigil_t{databases.run_id}_" if backend == "postgres" else None,
                            floor_pids,
                        )
                        rounds[target.name].append(result)
                        if target.name not in best or (
                            result.rps and sum(result.cpu_ms.values()) < sum(best[target.name].cpu_ms.values())
                        ):
                            best[target.name] = result
                for target in targets:
                    label = (
                        f"  {target.name} {target.method} {target.path}" + (" + contacts" if target.then_url else "")
                    )[:40]
                    r = best[target.name]
                    print(f"{label:40}{r.rps:10.1f}{r.p50_ms:10.2f}{r.p99_ms:10.2f}{r.errors:8d}", flush=True)
                for target in targets:
                    spent = best[target.name].cpu_ms
                    parts = ", ".join(
                        f"{group} {ms:.2f}" for group, ms in sorted(spent.items(), key=lambda i: -i[1]) if ms >= 0.005
                    )
                    print(f"    CPU ms per request, {target.name}: {sum(spent.values()):.2f} = {parts}")
                if "floor row" in best:
                    targets_met += print_floor_ratios(best)
                    if args.rounds > 1:
                        print_paired_ratios(rounds)
                share = best["gateway"].rps / best["direct"].rps if best["direct"].rps else 0.0
                shares.append(share)
                verdict = "meets" if share >= GOAL else "misses"
                print(
                    f"  the gateway keeps {share:.0%} of the direct throughput ({verdict} the {GOAL:.0%} goal;"
                    " wall throughput on a shared machine is noisy)",
                    flush=True,
                )
                if best.get("floor row") and best["floor row"].rps:
                    # what the cores allow any hop: the bare forwarding hop's share of the bare row, same run
                    floor_share = best["floor hop"].rps / best["floor row"].rps
                    print(f"  (the bare floor hop keeps {floor_share:.0%} of the floor row's throughput in this run)")
                if "direct+contacts" in best and best["direct+contacts"].rps:
                    pair = best["gateway"].rps / best["direct+contacts"].rps
                    print(
                        f"  and {pair:.0%} of the same two service calls made directly (verify, then contacts)",
                        flush=True,
                    )
        print(
            f"({connections} concurrent connections. Load average now {os.getloadavg()[0]:.1f}: other work on this "
            "machine skews the figures. PostgreSQL CPU counts this run's backends only; backends that exit "
            "during a measurement are not counted.)"
        )
        return 0 if all(targets_met) and all(share >= GOAL for share in shares) else 1
    finally:
        stop_floor(floor)
        benchkit.stop_stack(stack, databases, var_dir)


if __name__ == "__main__":
    sys.exit(main())
