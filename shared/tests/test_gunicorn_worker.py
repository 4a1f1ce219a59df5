"""The web worker's handling of kept-alive connections, on a real gunicorn serving a tiny WSGI app.

A thread that answered waits briefly for the same connection's next request (gunicorn_worker.LINGER_MS);
these tests check that it does, and that it never keeps a connection's thread from another connection.
And its memory: two malloc arenas for its threads, freed memory given back once idle.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from vigil_shared.gunicorn_worker import IdleRecycle, IdleTrim, _glibc

APP = textwrap.dedent(
    """
    import threading
    def app(environ, start_response):
        body = str(threading.get_ident()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def _gunicorn(
    tmp_path: Path, app: str, threads: int, env: dict[str, str] | None = None, settings: str = ""
) -> Iterator[int]:
    """A gunicorn of one worker with Vigil's worker class serving ``app`` (module source), and its port."""
    (tmp_path / "tiny_app.py").write_text(app)
    (tmp_path / "settings.py").write_text(settings)
    port = _free_port()
    command = [sys.executable, "-m", "gunicorn", "--worker-class", "vigil_shared.gunicorn_worker.ProblemThreadWorker"]
    command += ["--workers", "1", "--threads", str(threads), "--keep-alive", "30", "--bind", f"127.0.0.1:{port}"]
    command += ["--config", str(tmp_path / "settings.py"), "--chdir", str(tmp_path), "tiny_app:app"]
    environment = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"} | (env or {})
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=environment)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield port
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A gunicorn of one worker and two threads with Vigil's worker class, and its address."""
    # a long wait, so that a thread held for a connection would show as a third connection left unanswered
    with _gunicorn(
        tmp_path, APP, threads=2, settings="import vigil_shared.gunicorn_worker as w\nw.LINGER_MS = 2000\n"
    ) as port:
        yield "127.0.0.1", port


def _ask(connection: http.client.HTTPConnection) -> str:
    connection.request("GET", "/")
    answer = connection.getresponse()
    assert answer.status == 200
    return answer.read().decode()


def test_requests_sent_right_away_on_a_kept_alive_connection_are_served_by_one_thread(server):
    connection = http.client.HTTPConnection(*server, timeout=10)
    threads = {_ask(connection) for _ in range(50)}
    connection.close()
    assert len(threads) == 1


BUSY_CLIENT = """
import http.client, sys
connection = http.client.HTTPConnection(sys.argv[1], int(sys.argv[2]), timeout=10)
answered = 0
while True:
    connection.request("GET", "/")
    connection.getresponse().read()
    answered += 1
    if answered == 20:
        print("busy", flush=True)
"""


def test_a_connection_beyond_the_threads_is_served_while_others_keep_their_threads_busy(server):
    """Two clients (processes of their own) sending without pause on two threads: a third connection is
    still answered at once, its thread handed back by a busy connection rather than held for it."""
    clients = [
        subprocess.Popen([sys.executable, "-c", BUSY_CLIENT, *map(str, server)], stdout=subprocess.PIPE, text=True)
        for _ in (0, 1)
    ]
    try:
        for client in clients:
            assert client.stdout is not None and client.stdout.readline() == "busy\n"
        third = http.client.HTTPConnection(*server, timeout=10)
        began = time.monotonic()
        _ask(third)
        waited = time.monotonic() - began
        still_busy = [client.poll() is None for client in clients]
        third.close()
    finally:
        for client in clients:
            client.kill()
            client.communicate(timeout=30)
    assert still_busy == [True, True]
    assert waited < 1.0


def test_gunicorn_s_own_lines_are_json_lines_like_every_other(tmp_path: Path) -> None:
    """gunicorn's messages (start, a worker booted, a worker killed by a signal) go through Vigil's JSON
    handler. gunicorn's own handler formats ``%(process)d``, which is None since Vigil stops recording
    pids: every one of those lines was a ``--- Logging error ---`` traceback instead (a soak found a
    gateway worker's death by SIGBUS only in such a traceback's arguments)."""
    script = textwrap.dedent(
        """
        from gunicorn.config import Config
        from vigil_shared.gunicorn_worker import JsonGunicornLogger
        from vigil_shared.logs import configure_logging
        configure_logging("INFO", process="tiny-web")
        cfg = Config()
        cfg.set("errorlog", "-")
        cfg.set("loglevel", "info")
        log = JsonGunicornLogger(cfg)
        log.info("Booting worker with pid: %s", 4242)
        log.warning("Worker (pid:%s) was sent %s!", 4243, "SIGBUS")
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert "Logging error" not in done.stderr, done.stderr[-2000:]
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert [(line["level"], line["msg"], line["process"]) for line in lines] == [
        ("info", "Booting worker with pid: 4242", "tiny-web"),
        ("warning", "Worker (pid:4243) was sent SIGBUS!", "tiny-web"),
    ]


ARENA_APP = textwrap.dedent(
    """
    import ctypes, os, tempfile, time
    libc = ctypes.CDLL(None)
    libc.fopen.restype = ctypes.c_void_p
    libc.fopen.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
    libc.malloc_info.argtypes = [ctypes.c_int, ctypes.c_void_p]
    libc.fclose.argtypes = [ctypes.c_void_p]

    def arenas():
        fd, path = tempfile.mkstemp()
        os.close(fd)
        stream = libc.fopen(path.encode(), b"w")
        libc.malloc_info(0, stream)
        libc.fclose(stream)
        with open(path) as report:
            text = report.read()
        os.unlink(path)
        return text.count("<heap nr=")

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/arenas":
            body = str(arenas()).encode()
        else:
            kept = [bytearray(2000) for _ in range(50)]  # from malloc, in this thread's arena
            time.sleep(0.3)  # so that every request at once needs a thread of its own
            body = str(len(kept)).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)

# the settings file of the trim test: every trim the worker makes is written down
TRIM_SETTINGS = textwrap.dedent(
    """
    import os, vigil_shared.gunicorn_worker as w
    w.IdleTrim.__init__.__defaults__ = (0.3,)
    _tick = w.IdleTrim.tick
    def tick(self, now):
        trimmed = _tick(self, now)
        if trimmed:
            with open(os.environ["TRIMS_FILE"], "a") as trims:
                trims.write("trim\\n")
        return trimmed
    w.IdleTrim.tick = tick
    """
)


def _get(port: int, path: str) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    connection.request("GET", path)
    answer = connection.getresponse()
    assert answer.status == 200
    body = answer.read().decode()
    connection.close()
    return body


def _arenas_after_four_at_once(port: int) -> int:
    with ThreadPoolExecutor(4) as callers:
        assert list(callers.map(lambda _: _get(port, "/"), range(4))) == ["50"] * 4
    return int(_get(port, "/arenas"))


@pytest.mark.skipif(not _glibc(), reason="malloc arenas are glibc's")
def test_a_web_worker_s_threads_share_two_malloc_arenas(tmp_path: Path) -> None:
    """Each gthread thread got a malloc arena of its own (glibc makes one per allocating thread, up to
    eight per core), and each kept its freed memory: a soak saw the customer web worker's nine arenas
    hold 55 MB resident, 30 MB of it free, growing with the load. The worker now allows two."""
    with _gunicorn(tmp_path, ARENA_APP, threads=4) as port:
        assert _arenas_after_four_at_once(port) <= 2


@pytest.mark.skipif(not _glibc(), reason="malloc arenas are glibc's")
def test_malloc_arena_max_in_the_environment_decides_instead(tmp_path: Path) -> None:
    with _gunicorn(tmp_path, ARENA_APP, threads=4, env={"MALLOC_ARENA_MAX": "8"}) as port:
        assert _arenas_after_four_at_once(port) == 5  # the main arena and one per thread


@pytest.mark.skipif(not _glibc(), reason="malloc_trim is glibc's")
def test_a_web_worker_gives_freed_memory_back_once_idle_after_serving(tmp_path: Path) -> None:
    trims = tmp_path / "trims"

    def count() -> int:
        return len(trims.read_text().splitlines()) if trims.exists() else 0

    with _gunicorn(tmp_path, APP, threads=2, env={"TRIMS_FILE": str(trims)}, settings=TRIM_SETTINGS) as port:
        time.sleep(1.5)  # the readiness probe's connection was served too
        before = count()
        time.sleep(1.5)
        assert count() == before  # nothing served since: nothing to give back
        _get(port, "/")
        time.sleep(1.5)  # idle 0.3 s after serving: one trim, then none while nothing is served
        assert count() == before + 1
        _get(port, "/")
        _get(port, "/")
        time.sleep(1.5)
        assert count() == before + 2


def test_idle_trim_trims_once_per_idle_spell_after_serving() -> None:
    calls: list[float] = []
    trim = IdleTrim(lambda: calls.append(1), idle_seconds=2.0)
    assert not trim.tick(100.0)  # nothing served since start
    trim.served(100.0)
    assert not trim.tick(101.9)  # served 1.9 s ago: not idle yet
    assert trim.tick(102.0)
    assert not trim.tick(200.0)  # nothing served since
    trim.served(201.0)
    trim.served(202.5)  # still serving: the spell begins at the last answer
    assert not trim.tick(203.0)
    assert trim.tick(204.5)
    assert len(calls) == 2


PID_APP = textwrap.dedent(
    """
    import os, time
    def app(environ, start_response):
        if environ["PATH_INFO"] == "/slow":
            time.sleep(1.5)
        body = str(os.getpid()).encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]
    """
)


def _recycling(rss_mb: int, idle_seconds: float) -> str:
    """A settings file giving the worker class an :class:`IdleRecycle` ceiling and idle spell."""
    return (
        "import vigil_shared.gunicorn_worker as w\n"
        f"w.ProblemThreadWorker.recycle_rss_mb = {rss_mb}\n"
        f"w.ProblemThreadWorker.recycle_idle_seconds = {idle_seconds}\n"
    )


def _serving_pid_changes(port: int, first: str, within: float) -> str | None:
    """The pid answering once it is not ``first`` (every answer a 200 meanwhile), or None. Asks every
    1.5 s: long enough for the worker to be idle (0.5 s) and to look (at least once a second)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        time.sleep(1.5)
        pid = _get(port, "/")  # asserts a 200: a request is never refused while the worker changes
        if pid != first:
            return pid
    return None


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="resident memory is read from /proc")
def test_an_idle_worker_above_its_memory_ceiling_hands_its_place_to_a_fresh_one(tmp_path: Path) -> None:
    with _gunicorn(tmp_path, PID_APP, threads=2, settings=_recycling(1, 0.5)) as port:
        first = _get(port, "/")
        fresh = _serving_pid_changes(port, first, within=20)
        assert fresh is not None and fresh != first


@pytest.mark.skipif(not Path("/proc/self/statm").exists(), reason="resident memory is read from /proc")
def test_a_worker_is_never_replaced_with_a_request_in_progress_nor_below_its_ceiling(tmp_path: Path) -> None:
    with _gunicorn(tmp_path, PID_APP, threads=2, settings=_recycling(1, 0.5)) as port:
        first = _get(port, "/")
        assert _get(port, "/slow") == first  # idle 0.5 s long before it ends: answered by the same worker
    with _gunicorn(tmp_path, PID_APP, threads=2, settings=_recycling(100_000, 0.3)) as port:
        first = _get(port, "/")
        assert _serving_pid_changes(port, first, within=3) is None


def test_idle_recycle_checks_memory_once_per_idle_spell_and_never_while_busy() -> None:
    resident = [200]
    recycle = IdleRecycle(lambda: resident[0], ceiling=100, idle_seconds=30.0)
    assert not recycle.tick(100.0, busy=False)  # nothing served since start
    recycle.served(100.0)
    assert not recycle.tick(129.0, busy=False)  # idle 29 s
    assert not recycle.tick(131.0, busy=True)  # a request in progress
    assert recycle.tick(131.0, busy=False) and recycle.found == 200
    assert not recycle.tick(500.0, busy=False)  # checked once per idle spell
    resident[0] = 50
    recycle.served(600.0)
    assert not recycle.tick(631.0, busy=False)  # below the ceiling
    resident[0] = 200
    assert not recycle.tick(700.0, busy=False)  # not checked again until something is served
    unknown = IdleRecycle(lambda: None, ceiling=100, idle_seconds=1.0)
    unknown.served(0.0)
    assert not unknown.tick(5.0, busy=False)  # no resident figure: never
