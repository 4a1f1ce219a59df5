"""A memory probe for ``bench/soak_rss.py``, loaded as ``sitecustomize`` by every Python process of
the Vigil that bench starts (it puts this folder on ``PYTHONPATH``); it does nothing unless
``VIGIL_MEMPROBE_DIR`` is set. Never part of the product.

Every ``VIGIL_MEMPROBE_SECONDS`` (15) a daemon thread appends one JSON line to
``$VIGIL_MEMPROBE_DIR/<pid>.jsonl`` with what only the process itself can tell, to split its RSS:

- ``sqlite_used`` / ``sqlite_pagecache``: the bytes SQLite holds (``sqlite3_status64``: everything it
  allocated, and its page caches among them), read through ``ctypes`` from the ``libsqlite3`` the
  ``sqlite3`` module uses;
- ``malloc_*``: glibc's ``mallinfo2()`` over every arena: ``arena`` (bytes taken from the system
  with ``brk``/arena heaps), ``hblkhd`` (``mmap``-ed blocks), ``uordblks`` (in use), ``fordblks``
  (free but kept), ``keepcost``;
- ``py_blocks``: ``sys.getallocatedblocks()`` (the Python heap's live blocks), ``gc_objects``
  (objects the collector tracks, frozen ones apart);
- the entries of the bounded caches that hold statements (SQLAlchemy's compiled cache per engine, the
  customer search's ``_KEPT``, ``_FIRST_PAGES`` and ``_LARGE``);
- with ``VIGIL_MEMPROBE_TRACEMALLOC=1``, in a forked child only (a gunicorn worker, a Celery pool
  process): ``tracemalloc``'s traced bytes since the fork and its own overhead, and every 8th sample
  the top allocation sites in ``<pid>.top.txt``.

Writing ``$VIGIL_MEMPROBE_DIR/trim`` (any content) asks each process once per distinct content to
call ``malloc_trim(0)``; its sample then carries ``trimmed`` with its RSS before and after.
"""

from __future__ import annotations

import os

_DIR = os.environ.get("VIGIL_MEMPROBE_DIR")


def _probe_main() -> None:  # noqa: C901 - one loop, kept in one place
    import ctypes
    import gc
    import json
    import sys
    import threading
    import time

    seconds = float(os.environ.get("VIGIL_MEMPROBE_SECONDS") or 15)
    trace = os.environ.get("VIGIL_MEMPROBE_TRACEMALLOC") == "1"

    class MallInfo2(ctypes.Structure):
        _fields_ = [
            (name, ctypes.c_size_t)
            for name in (
                "arena",
                "ordblks",
                "smblks",
                "hblks",
                "hblkhd",
                "usmblks",
                "fsmblks",
                "uordblks",
                "fordblks",
                "keepcost",
            )
        ]

    libc = ctypes.CDLL("libc.so.6")
    libc.mallinfo2.restype = MallInfo2
    state: dict[str, object] = {"sqlite": None, "trim": None}

    def rss_kb() -> int:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def rollup() -> dict[str, int]:
        values = {}
        with open("/proc/self/smaps_rollup") as smaps:
            for line in list(smaps)[1:]:
                key, value = line.split(":", 1)
                values[key] = int(value.split()[0])
        return values

    def sqlite_status() -> dict[str, int]:
        if "_sqlite3" not in sys.modules:
            return {}
        if state["sqlite"] is None:
            state["sqlite"] = ctypes.CDLL("libsqlite3.so.0")
        lib = state["sqlite"]
        out = {}
        for name, op in (("sqlite_used", 0), ("sqlite_pagecache", 2), ("sqlite_mallocs", 9)):
            current, high = ctypes.c_int64(), ctypes.c_int64()
            lib.sqlite3_status64(op, ctypes.byref(current), ctypes.byref(high), 0)  # type: ignore[attr-defined]
            out[name] = current.value
            out[name + "_high"] = high.value
        return out

    def cache_sizes() -> dict[str, object]:
        """Entries of the bounded caches that hold statements: SQLAlchemy's compiled cache of each engine,
        and the customer search's kept shapes, first pages and large searches."""
        sizes: dict[str, object] = {}
        if "sqlalchemy.engine.base" in sys.modules:
            engine_type = sys.modules["sqlalchemy.engine.base"].Engine
            engines = [o for o in gc.get_objects() if isinstance(o, engine_type)]
            sizes["compiled_cache"] = [len(e._compiled_cache or ()) for e in engines]
        search = sys.modules.get("vigil_customer.search")
        if search is not None:
            for name in ("_KEPT", "_FIRST_PAGES", "_LARGE"):
                sizes[f"search{name}"] = len(getattr(search, name, ()))
        return sizes

    def sample(path: str, forked: bool, count: int) -> None:
        import tracemalloc

        info = libc.mallinfo2()
        roll = rollup()
        line: dict[str, object] = {
            "t": time.time(),
            "pid": os.getpid(),
            "argv": " ".join(sys.argv[:3])[-120:],
            "forked": forked,
            "rss_kb": roll.get("Rss", 0),
            "anon_kb": roll.get("Anonymous", 0),
            "threads": threading.active_count(),
            **{f"malloc_{name}": getattr(info, name) for name, _ in MallInfo2._fields_},
            **sqlite_status(),
            "py_blocks": sys.getallocatedblocks(),
            "gc_objects": len(gc.get_objects()),
            "gc_frozen": gc.get_freeze_count(),
        }
        line |= cache_sizes()
        if tracemalloc.is_tracing():
            line["traced"] = tracemalloc.get_traced_memory()[0]
            line["traced_overhead"] = tracemalloc.get_tracemalloc_memory()
            if count % 8 == 7:
                top = tracemalloc.take_snapshot().statistics("lineno")[:40]
                with open(os.path.join(_DIR or "", f"{os.getpid()}.top.txt"), "w") as out:
                    out.write("\n".join(str(stat) for stat in top) + "\n")
        request = os.path.join(_DIR or "", "trim")
        if os.path.exists(request):
            with open(request) as f:
                generation = f.read()
            if generation != state["trim"]:
                state["trim"] = generation
                before = rss_kb()
                libc.malloc_trim(0)
                line["trimmed"] = {"before_kb": before, "after_kb": rss_kb(), "generation": generation}
        with open(path, "a") as out:
            out.write(json.dumps(line) + "\n")

    def trim_pending() -> bool:
        try:
            with open(os.path.join(_DIR or "", "trim")) as f:
                return f.read() != state["trim"]
        except OSError:
            return False

    def loop(forked: bool) -> None:
        path = os.path.join(_DIR or "", f"{os.getpid()}.jsonl")
        count = 0
        while True:
            try:
                sample(path, forked, count)
            except Exception as error:  # noqa: BLE001 - a probe never breaks the process
                with open(path, "a") as out:
                    out.write(json.dumps({"error": repr(error), "pid": os.getpid()}) + "\n")
            count += 1
            for _ in range(max(1, int(seconds))):  # a trim request is served within a second
                time.sleep(1)
                if trim_pending():
                    break

    def start(forked: bool) -> None:
        if forked and trace:
            import tracemalloc

            tracemalloc.start(1)
        threading.Thread(target=loop, args=(forked,), name="memprobe", daemon=True).start()

    start(False)
    os.register_at_fork(after_in_child=lambda: start(True))


if _DIR:
    _probe_main()
