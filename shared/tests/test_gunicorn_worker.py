"""The web worker's handling of kept-alive connections, on a real gunicorn serving a tiny WSGI app.

A thread that answered waits briefly for the same connection's next request (gunicorn_worker.LINGER_MS);
these tests check that it does, and that it never keeps a connection's thread from another connection.
"""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

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


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A gunicorn of one worker and two threads with Vigil's worker class, and its address."""
    (tmp_path / "tiny_app.py").write_text(APP)
    # a long wait, so that a thread held for a connection would show as a third connection left unanswered
    (tmp_path / "settings.py").write_text("import vigil_shared.gunicorn_worker as w\nw.LINGER_MS = 2000\n")
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "--worker-class",
        "vigil_shared.gunicorn_worker.ProblemThreadWorker",
        "--workers",
        "1",
        "--threads",
        "2",
        "--keep-alive",
        "30",
        "--bind",
        f"127.0.0.1:{port}",
        "--config",
        str(tmp_path / "settings.py"),
        "--chdir",
        str(tmp_path),
        "tiny_app:app",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
        yield "127.0.0.1", port
    finally:
        process.terminate()
        process.wait(timeout=30)


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
