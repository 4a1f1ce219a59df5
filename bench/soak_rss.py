"""Memory of the web processes under sustained load on the embedded default (``make run``'s shape).

    .venv/bin/python bench/soak_rss.py [--minutes 10] [--clients 8] [--sample 20] [--idle 45] [--probe]
        [--tracemalloc] [--env NAME=VALUE ...] [--out /tmp/soak.jsonl] [--trim]

Starts a Vigil of its own (the runner's ``Stack`` on free ports, SQLite databases and broker, as
``make run`` does), then ``--clients`` callers, each signed in through the gateway as the
administrator, drive the customer API as fast as it answers for ``--minutes``: creates, reads,
searches with varied ``q`` (surname prefixes, first name and surname, phone digits, ids, misses;
sorts, kinds, pages), lists (sorted, filtered by city), updates with ``If-Match``, notes written,
listed and edited, histories, and a property now and then. Every ``--sample`` seconds it records each
process's RSS and its anonymous and file-backed parts (``/proc/<pid>/smaps_rollup``), and for every
web worker where its anonymous memory lies (``/proc/<pid>/smaps``: the main heap, glibc's thread
arenas, other anonymous mappings).

``--probe`` loads ``bench/memprobe/sitecustomize.py`` into every process (through ``PYTHONPATH``):
each then records what only it can tell (SQLite's bytes and its page caches', glibc's ``mallinfo2``,
the Python heap's blocks and gc objects; with ``--tracemalloc``, the Python bytes a forked worker
allocated and its top allocation sites), in files beside ``--out``. ``--trim`` then asks every
process to ``malloc_trim(0)`` once the load has stopped: what glibc kept free but resident.
``--env NAME=VALUE`` adds to the processes' environment (``MALLOC_ARENA_MAX=2``, a ``VIGIL_`` setting;
``PYTHONPATH=DIR`` holding another ``vigil_shared``, such as ``main``'s from ``git archive``, runs that
code instead: the baseline in the same sitting).

Prints, per process, the RSS at the start of the load, after the first minute, at each quarter,
at the end and idle after it (15 s and ``--idle`` seconds after: an idle web worker above
``VIGIL_WEB_RECYCLE_RSS_MB`` hands its place to a fresh one after ``VIGIL_WEB_RECYCLE_IDLE_SECONDS``),
and the requests answered; the samples go to ``--out`` (JSON lines).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path

import benchkit
import requests
from bench_idle_rss import descendants, label

from vigil_runner.stack import Stack

HERE = Path(__file__).resolve().parent
_NAMES = json.loads((HERE / "names.json").read_text())
SURNAMES: list[str] = _NAMES["surnames"][:300]
FIRST_NAMES: list[str] = _NAMES["first_names"][:200]
CITIES = ["Ottawa", "Kanata", "Nepean", "Orleans", "Barrhaven", "Gatineau", "Stittsville", "Manotick"]
SORTS = ("name", "-name", "created", "-created", "id", "-id")
_EXCHANGES = [e for e in range(230, 1000) if e % 100 != 11]
ARENA = 64 * 1024 * 1024  # glibc's HEAP_MAX_SIZE on 64-bit: every thread arena's heap is aligned to it


def phone() -> str:
    n = uuid.uuid4().int
    return f"613-{_EXCHANGES[n % len(_EXCHANGES)]}-{(n >> 16) % 10_000:04d}"


def rollup(pid: int) -> dict[str, int]:
    values = {}
    for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()[1:]:
        key, value = line.split(":", 1)
        values[key] = int(value.split()[0])
    return values


def anonymous_parts(pid: int) -> dict[str, int]:
    """KB resident in the main heap (``[heap]``, glibc's main arena), in thread arenas (an anonymous
    read-write mapping followed by the inaccessible rest of its 64 MiB heap, which ends aligned),
    in other anonymous mappings (Python's own arenas, large ``mmap``-ed blocks, thread stacks), and
    how many thread arenas there are."""
    maps = []
    current: dict | None = None
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split()
        if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
            start, end = (int(x, 16) for x in head[0].split("-"))
            current = {"start": start, "end": end, "perms": head[1], "name": head[5] if len(head) > 5 else ""}
            maps.append(current)
        elif current is not None and head[0] == "Anonymous:":
            current["anon"] = int(head[1])
    parts = {"heap_kb": 0, "arenas_kb": 0, "other_anon_kb": 0, "arenas": 0}
    for i, m in enumerate(maps):
        anon = m.get("anon", 0)
        if m["name"] == "[heap]":
            parts["heap_kb"] += anon
            continue
        if m["name"] and not m["name"].startswith("[anon"):
            continue
        after = maps[i + 1] if i + 1 < len(maps) else None
        if (
            m["perms"] == "rw-p"
            and after is not None
            and after["start"] == m["end"]
            and after["perms"] == "---p"
            and not after["name"]
            and after["end"] % ARENA == 0
            and after["end"] - m["start"] <= ARENA
        ):
            parts["arenas_kb"] += anon
            parts["arenas"] += 1
        else:
            parts["other_anon_kb"] += anon
    return parts


class Load:
    """``clients`` callers of the customer API through the gateway, as fast as it answers."""

    def __init__(self, stack: Stack, clients: int, seed: int = 1):
        self.api = f"{stack.gateway_url}/api/v1"
        self.password = stack.env["VIGIL_ADMIN_PASSWORD"]
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.statuses: Counter[str] = Counter()
        self.errors: list[str] = []
        self.requests = 0
        self.customers: list[int] = []
        self.notes: list[tuple[int, int]] = []
        self.random = random.Random(seed)
        admin = self.session()
        self.location = admin.post(f"{self.api}/locations", json={"name": "Soak RSS"}, timeout=30).json()["id"]
        self.threads = [threading.Thread(target=self.client, args=(n,), daemon=True) for n in range(clients)]

    def session(self) -> requests.Session:
        http = requests.Session()
        token = http.post(
            f"{self.api}/auth/token", json={"username": "admin", "password": self.password}, timeout=30
        ).json()["access_token"]
        http.headers["Authorization"] = f"Bearer {token}"
        return http

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopping.set()
        for thread in self.threads:
            thread.join(60)

    def call(self, http: requests.Session, op: str, method: str, path: str, **kwargs) -> requests.Response | None:
        try:
            response = http.request(method, f"{self.api}{path}", timeout=60, **kwargs)
        except requests.RequestException as error:
            with self.lock:
                self.errors.append(f"{op} {method} {path}: {error}")
            return None
        with self.lock:
            self.requests += 1
            self.statuses[f"{op} {response.status_code}"] += 1
            if response.status_code >= 500 and len(self.errors) < 50:
                self.errors.append(f"{op} {method} {path}: {response.status_code} {response.text[:200]}")
        return response

    def some_customer(self, rnd: random.Random) -> int | None:
        with self.lock:
            return rnd.choice(self.customers) if self.customers else None

    def query(self, rnd: random.Random) -> dict[str, object]:
        """A search as people type them: a surname's start, a first name and a surname's start, phone
        digits, an id, a word matching nothing; now and then sorted, of a kind, a later page."""
        kind = rnd.random()
        surname = rnd.choice(SURNAMES)
        if kind < 0.35:
            q = surname[: rnd.randint(2, len(surname))]
        elif kind < 0.6:
            q = f"{rnd.choice(FIRST_NAMES)} {surname[: rnd.randint(2, len(surname))]}"
        elif kind < 0.7:
            q = f"613-{rnd.choice(_EXCHANGES)}"[: rnd.randint(3, 7)]
        elif kind < 0.8:
            q = str(self.some_customer(rnd) or 1)
        elif kind < 0.9:
            q = "".join(rnd.choice("bcdfghjklmnpqrstvwxz") for _ in range(rnd.randint(3, 8)))
        else:
            q = f"{surname[:3]} {rnd.choice(CITIES).lower()[:4]}"
        params: dict[str, object] = {"q": q}
        if rnd.random() < 0.3:
            params["sort"] = rnd.choice(SORTS)
        if rnd.random() < 0.2:
            params["kind"] = "customer"
        if rnd.random() < 0.2:
            params["page"] = rnd.randint(2, 3)
        if rnd.random() < 0.2:
            params["per_page"] = rnd.choice((10, 50))
        return params

    def client(self, number: int) -> None:  # noqa: C901 - one mix of operations
        rnd = random.Random(number * 7919 + self.random.random())
        http = self.session()
        ops = (
            ("create", 15),
            ("read", 20),
            ("search", 25),
            ("list", 10),
            ("update", 10),
            ("note", 7),
            ("notes", 5),
            ("note_edit", 3),
            ("history", 3),
            ("property", 2),
        )
        names, weights = zip(*ops, strict=True)
        while not self.stopping.is_set():
            op = rnd.choices(names, weights)[0]
            customer = self.some_customer(rnd)
            if op == "create" or customer is None:
                body = {
                    "kind": "customer",
                    "first_name": rnd.choice(FIRST_NAMES).title(),
                    "last_name": rnd.choice(SURNAMES).title(),
                    "city": rnd.choice(CITIES),
                    "state": "ON",
                    "primary_phone": phone(),
                    "account_type": rnd.choice(("Residential", "Commercial")),
                    "location_id": self.location,
                }
                if rnd.random() < 0.3:
                    body["email"] = f"{uuid.uuid4().hex[:10]}@example.com"
                made = self.call(http, "create", "POST", "/customers", params={"allow_duplicates": "true"}, json=body)
                if made is not None and made.status_code == 201:
                    with self.lock:
                        self.customers.append(made.json()["id"])
            elif op == "read":
                self.call(http, op, "GET", f"/customers/{customer}")
            elif op == "search":
                self.call(http, op, "GET", "/customers", params=self.query(rnd))
            elif op == "list":
                params: dict[str, object] = {"sort": rnd.choice(SORTS), "page": rnd.randint(1, 5)}
                if rnd.random() < 0.4:
                    params["city"] = rnd.choice(CITIES)
                self.call(http, op, "GET", "/customers", params=params)
            elif op == "update":
                read = self.call(http, "read", "GET", f"/customers/{customer}")
                if read is not None and read.status_code == 200:
                    changes = rnd.choice(
                        (
                            {"city": rnd.choice(CITIES)},
                            {"first_name": rnd.choice(FIRST_NAMES).title()},
                            {"zip": "K2K 1A1"},
                        )
                    )
                    self.call(
                        http,
                        op,
                        "PATCH",
                        f"/customers/{customer}",
                        json=changes,
                        headers={"If-Match": read.headers.get("ETag", "")},
                    )
            elif op == "note":
                text = " ".join(rnd.choice(SURNAMES) for _ in range(rnd.randint(3, 40)))
                made = self.call(http, op, "POST", f"/customers/{customer}/notes", json={"text": text})
                if made is not None and made.status_code == 201:
                    with self.lock:
                        self.notes.append((customer, made.json()["id"]))
            elif op == "notes":
                self.call(http, op, "GET", f"/customers/{customer}/notes")
            elif op == "note_edit":
                with self.lock:
                    pair = rnd.choice(self.notes) if self.notes else None
                if pair is not None:
                    path = f"/customers/{pair[0]}/notes/{pair[1]}"
                    read = self.call(http, "note_read", "GET", path)
                    if read is not None and read.status_code == 200:
                        self.call(
                            http,
                            op,
                            "PATCH",
                            path,
                            json={"text": f"edited {rnd.random()}"},
                            headers={"If-Match": read.headers.get("ETag", "")},
                        )
            elif op == "history":
                self.call(http, op, "GET", f"/customers/{customer}/history")
            elif op == "property":
                account = f"RSS-{uuid.uuid4().hex[:10]}".upper()
                self.call(
                    http,
                    op,
                    "POST",
                    f"/customers/{customer}/properties",
                    json={"account_number": account, "address": f"{rnd.randint(1, 999)} Soak Street"},
                )


def processes(stack: Stack) -> list[tuple[str, int, bool]]:
    """(name, pid, is a web worker) of every process of the stack and its descendants."""
    found = []
    for process in stack.processes:
        assert process.popen is not None
        found.append((process.name, process.popen.pid, False))
        for child, parent, _depth in descendants(process.popen.pid):
            name = label(child, parent, process.name)
            web = parent == process.popen.pid and name == f"{process.name} child" and "worker" not in process.name
            found.append((name, child, web))
    return found


def sample(stack: Stack, phase: str, started: float, load: Load | None, out) -> dict[str, dict]:
    rows = {}
    for name, pid, web in processes(stack):
        with contextlib.suppress(OSError):
            roll = rollup(pid)
            row = {
                "rss_kb": roll["Rss"],
                "anon_kb": roll.get("Anonymous", 0),
                "file_kb": roll["Rss"] - roll.get("Anonymous", 0),
                "pid": pid,
            }
            if web:
                row |= anonymous_parts(pid)
            rows[name] = row
    record = {
        "t": round(time.monotonic() - started, 1),
        "phase": phase,
        "load1": os.getloadavg()[0],
        "requests": load.requests if load else 0,
        "processes": rows,
    }
    out.write(json.dumps(record) + "\n")
    out.flush()
    return record


def probe_summary(probe_dir: Path, pids: dict[int, str]) -> None:
    """The first and last probe line of each web worker (and what trimming gave back)."""
    print("\nIn-process figures of the web workers (--probe), first sample -> last sample, MB:")
    keys = [
        ("rss_kb", 1024),
        ("anon_kb", 1024),
        ("sqlite_used", 1 << 20),
        ("sqlite_pagecache", 1 << 20),
        ("malloc_arena", 1 << 20),
        ("malloc_hblkhd", 1 << 20),
        ("malloc_uordblks", 1 << 20),
        ("malloc_fordblks", 1 << 20),
        ("traced", 1 << 20),
        ("traced_overhead", 1 << 20),
    ]
    for pid, name in pids.items():
        path = probe_dir / f"{pid}.jsonl"
        if not path.exists():
            continue
        lines = [json.loads(line) for line in path.read_text().splitlines()]
        lines = [line for line in lines if "error" not in line]
        if not lines:
            continue
        first, last = lines[0], lines[-1]
        parts = []
        for key, unit in keys:
            if key in last:
                parts.append(f"{key} {first.get(key, 0) / unit:.1f}->{last[key] / unit:.1f}")
        for key in ("py_blocks", "gc_objects", "threads"):
            parts.append(f"{key} {first.get(key)}->{last.get(key)}")
        print(f"  {name} ({pid}): " + ", ".join(parts))
        trims = [line["trimmed"] for line in lines if "trimmed" in line]
        for trim in trims:
            print(f"    malloc_trim(0): RSS {trim['before_kb'] / 1024:.1f} -> {trim['after_kb'] / 1024:.1f} MB")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--sample", type=float, default=20.0, help="seconds between samples")
    parser.add_argument(
        "--idle", type=float, default=45.0, help="seconds idle after the load before the last sample (15 and this)"
    )
    parser.add_argument("--probe", action="store_true", help="in-process figures (bench/memprobe)")
    parser.add_argument("--tracemalloc", action="store_true", help="with --probe: tracemalloc in forked workers")
    parser.add_argument("--trim", action="store_true", help="with --probe: malloc_trim(0) in every process at the end")
    parser.add_argument("--env", action="append", default=[], help="NAME=VALUE for every process (repeatable)")
    parser.add_argument("--out", default="/tmp/soak_rss.jsonl", help="the samples, as JSON lines")
    parser.add_argument("--label", default="", help="a name printed with the results")
    args = parser.parse_args(argv)

    settings = {
        "VIGIL_LOG_LEVEL": "WARNING",
        "VIGIL_PASSWORD_HASHING": "fast-for-tests",  # a standard sign-in's 64 MiB would sit in the gateway
    }
    for pair in args.env:
        name, _, value = pair.partition("=")
        settings[name] = value
    probe_dir = Path(args.out).with_suffix(".probe")
    if args.probe:
        shutil.rmtree(probe_dir, ignore_errors=True)
        probe_dir.mkdir(parents=True)
        settings |= {
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE / "memprobe"), settings.get("PYTHONPATH")])),
            "VIGIL_MEMPROBE_DIR": str(probe_dir),
            "VIGIL_MEMPROBE_SECONDS": str(int(args.sample)),
        }
        if args.tracemalloc:
            settings["VIGIL_MEMPROBE_TRACEMALLOC"] = "1"
    var_dir = tempfile.mkdtemp(prefix="soak-rss-")
    stack = None
    load = None
    history: list[dict] = []
    try:
        stack = benchkit.launch(benchkit.stack_overrides(var_dir, settings))
        with open(args.out, "w") as out:
            started = time.monotonic()
            time.sleep(5)
            history.append(sample(stack, "idle before", started, None, out))
            load = Load(stack, args.clients)
            load.start()
            load_started = time.monotonic()
            history.append(sample(stack, "load", started, load, out))
            deadline = load_started + args.minutes * 60
            while time.monotonic() < deadline:
                time.sleep(min(args.sample, max(0.0, deadline - time.monotonic())))
                history.append(sample(stack, "load", started, load, out))
                last = history[-1]
                web = {k: v["rss_kb"] / 1024 for k, v in last["processes"].items() if k.endswith(" child")}
                print(
                    f"  {last['t']:7.0f}s load {last['load1']:5.1f} requests {last['requests']:7d} "
                    + " ".join(f"{k.split()[0]}={v:.1f}" for k, v in web.items() if not k.startswith("sandbox")),
                    flush=True,
                )
            load.stop()
            time.sleep(15)
            history.append(sample(stack, "idle after", started, load, out))
            if args.idle > 15:  # an idle web worker above its ceiling is replaced after VIGIL_WEB_RECYCLE_IDLE_SECONDS
                time.sleep(args.idle - 15)
                history.append(sample(stack, f"idle {args.idle:g}s", started, load, out))
            if args.probe and args.trim:
                (probe_dir / "trim").write_text("1")
                time.sleep(5)
                history.append(sample(stack, "after trim", started, load, out))
        pids = {pid: name for name, pid, web in processes(stack) if web}
    finally:
        if load is not None:
            load.stopping.set()
        benchkit.stop_stack(stack, None, var_dir)

    print(f"\nSoak {args.label or ''}: {args.clients} clients, {args.minutes:g} min, env {args.env or 'default'}")
    assert load is not None
    elapsed = args.minutes * 60
    print(
        f"  requests answered: {load.requests} ({load.requests / elapsed:.1f}/s),"
        f" transport errors + 5xx: {len(load.errors)}"
    )
    print("  " + ", ".join(f"{k}: {v}" for k, v in sorted(load.statuses.items())))
    for error in load.errors[:5]:
        print(f"    {error}")
    loads = [h["load1"] for h in history]
    print(f"  load average (1 min) during the run: {min(loads):.1f}-{max(loads):.1f}")
    during = [h for h in history if h["phase"] == "load"]
    first_minute = next((h for h in during if h["t"] - during[0]["t"] >= 60), during[0])
    quarter = [during[min(len(during) - 1, round(len(during) * q / 4))] for q in (1, 2, 3)]
    columns = [("idle", history[0]), ("1 min", first_minute), ("25%", quarter[0]), ("50%", quarter[1])]
    columns += [("75%", quarter[2]), ("end", during[-1])] + [(h["phase"], h) for h in history if h["phase"] != "load"][
        1:
    ]
    print(f"\n  RSS MB {'':<28}" + "".join(f"{name:>12}" for name, _ in columns))
    for name in history[0]["processes"]:
        values = [h["processes"].get(name, {}).get("rss_kb", 0) / 1024 for _, h in columns]
        print(f"  {name:<35}" + "".join(f"{v:>12.1f}" for v in values))
    print("\n  web workers' RSS MB by minute of load (requests answered by then):")
    marks = [
        next((h for h in during if h["t"] - during[0]["t"] >= 60 * m - 1), during[-1])
        for m in range(0, int(args.minutes) + 1)
    ]
    print(f"  {'minute':<35}" + "".join(f"{m:>7}" for m in range(len(marks))))
    print(f"  {'requests':<35}" + "".join(f"{h['requests']:>7}" for h in marks))
    for name, row in during[-1]["processes"].items():
        if "arenas" in row:
            print(
                f"  {name:<35}"
                + "".join(f"{h['processes'].get(name, {}).get('rss_kb', 0) / 1024:>7.1f}" for h in marks)
            )
    print("\n  web workers, anonymous MB (main heap / thread arenas [count] / other anonymous), idle -> end:")
    for name, row in during[-1]["processes"].items():
        if "arenas" in row:
            idle = history[0]["processes"].get(name, {})
            print(
                f"  {name:<35} heap {idle.get('heap_kb', 0) / 1024:.1f}->{row['heap_kb'] / 1024:.1f}"
                f"  arenas {idle.get('arenas_kb', 0) / 1024:.1f}->{row['arenas_kb'] / 1024:.1f}"
                f" [{idle.get('arenas', 0)}->{row['arenas']}]"
                f"  other {idle.get('other_anon_kb', 0) / 1024:.1f}->{row['other_anon_kb'] / 1024:.1f}"
                f"  file {idle.get('file_kb', 0) / 1024:.1f}->{row['file_kb'] / 1024:.1f}"
            )
    if args.probe:
        probe_summary(probe_dir, pids)
    print(f"\n  samples: {args.out}" + (f", probe lines: {probe_dir}" if args.probe else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
