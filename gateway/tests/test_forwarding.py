"""The forwarding connections (``vigil_gateway.proxy.Origin``): kept alive, never reused once the service
closed them, and retried only where urllib3 retried (idempotent methods, or nothing sent yet)."""

from __future__ import annotations

import http.client
import io
import socket
import struct
import threading
import time
from collections.abc import Callable

import pytest

from vigil_gateway.proxy import KernelTimedSocket, Origin, UpstreamAnswer, UpstreamError


class Listener:
    """A socket on a free port; each accepted connection is handed to ``on_accept`` (in the accepting thread)."""

    def __init__(self, on_accept: Callable[[socket.socket], None]) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, args=(on_accept,), daemon=True).start()

    def _accept(self, on_accept: Callable[[socket.socket], None]) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            on_accept(conn)


class RawService(Listener):
    """A tiny HTTP/1.1 server on a socket: answers each request, or (``drop``) reads it and closes unanswered;
    ``close_after`` closes each connection after that many answers. Counts connections and requests."""

    def __init__(self, *, drop: bool = False, close_after: int | None = None):
        self.drop, self.close_after = drop, close_after
        self.connections = 0
        self.closed = threading.Semaphore(0)  # released as each connection is closed by the server
        self.requests: list[bytes] = []
        super().__init__(self._accepted)

    def _accepted(self, conn: socket.socket) -> None:
        self.connections += 1
        threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            self._answer(conn)
        finally:
            conn.close()
            self.closed.release()

    def _answer(self, conn: socket.socket) -> None:
        answered = 0
        buffer = b""
        while True:
            while b"\r\n\r\n" not in buffer:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                buffer += chunk
            head, _, buffer = buffer.partition(b"\r\n\r\n")
            length = next(
                (
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                ),
                0,
            )
            while len(buffer) < length:
                buffer += conn.recv(65536)
            buffer = buffer[length:]
            self.requests.append(head.split(b"\r\n")[0])
            if self.drop:
                return
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Answer: yes\r\n\r\nok")
            answered += 1
            if self.close_after is not None and answered >= self.close_after:
                return

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def service(request):
    server = RawService(**getattr(request, "param", {}))
    yield server
    server.close()


@pytest.fixture
def origins():
    made: list[Origin] = []

    def make(port: int) -> Origin:
        made.append(Origin(f"http://127.0.0.1:{port}", 2.0, 5.0))
        return made[-1]

    yield make
    for origin in made:
        origin.close()


def test_connections_are_kept_alive_and_answers_read_whole(service, origins):
    origin = origins(service.port)
    for _ in range(3):
        answer = origin.send("GET", "/api/v1/properties/1?x=1", None, {"Accept": "application/json"})
        assert answer.status == 200 and answer.data == b"ok" and answer.headers["X-Answer"] == "yes"
    assert service.connections == 1 and service.requests == [b"GET /api/v1/properties/1?x=1 HTTP/1.1"] * 3


@pytest.mark.parametrize("service", [{"close_after": 1}], indirect=True)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_connection_the_service_closed_is_not_reused(service, method, origins):
    origin = origins(service.port)
    for _ in range(4):
        assert origin.send(method, "/a", b"{}", {}).status == 200
        assert service.closed.acquire(timeout=5)  # the service closed the connection kept in the pool
    assert len(service.requests) == 4


@pytest.mark.parametrize("service", [{"drop": True}], indirect=True)
def test_a_call_dropped_after_it_was_sent_is_retried_once_for_idempotent_methods_only(service, origins):
    origin = origins(service.port)
    with pytest.raises(UpstreamError):
        origin.send("POST", "/a", b"{}", {})
    assert len(service.requests) == 1, "a POST that reached the service is never sent twice"
    with pytest.raises(UpstreamError):
        origin.send("GET", "/a", None, {})
    assert len(service.requests) == 3, "a GET is tried once more on a fresh connection"


def test_a_service_that_does_not_listen_is_an_upstream_error(origins):
    with socket.create_server(("127.0.0.1", 0)) as closed:
        port = closed.getsockname()[1]
    origin = origins(port)
    with pytest.raises(UpstreamError):
        origin.send("POST", "/a", b"{}", {})


class SilentService(Listener):
    """Accepts connections and reads what is sent, never answering."""

    def __init__(self):
        self.connections: list[socket.socket] = []
        super().__init__(self.connections.append)

    def close(self) -> None:
        self.listener.close()
        for conn in self.connections:
            conn.close()


@pytest.mark.parametrize(("method", "body", "attempts"), [("GET", None, 2), ("POST", b"{}", 1)])
def test_a_service_that_does_not_answer_in_time_is_an_upstream_error(method, body, attempts):
    silent = SilentService()
    origin = Origin(f"http://127.0.0.1:{silent.port}", 2.0, 0.2)
    try:
        started = time.monotonic()
        with pytest.raises(UpstreamError, match="TimeoutError"):
            origin.send(method, "/a", body, {})
        waited = time.monotonic() - started
        # the read timeout bounds each attempt; a read is tried once more on a fresh connection
        assert 0.2 * attempts - 0.05 <= waited < 0.2 * attempts + 1.0
        assert len(silent.connections) == attempts
    finally:
        origin.close()
        silent.close()


def test_plain_connections_wait_with_kernel_timeouts_not_a_poll_per_call(service, origins):
    """Each send and receive is one system call: the socket blocks, the kernel bounds its waits."""
    origin = origins(service.port)
    assert origin.send("GET", "/a", None, {}).status == 200
    (conn,) = origin._idle
    assert isinstance(conn.sock, KernelTimedSocket) and conn.sock.gettimeout() is None
    received = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.calcsize("ll"))
    sent = conn.sock.getsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.calcsize("ll"))
    assert struct.unpack("ll", received) == struct.unpack("ll", sent) == (5, 0)


def test_a_read_on_kept_connections_the_service_closed_is_sent_again_on_a_fresh_one(origins, monkeypatch):
    """A bodiless read takes a kept connection without polling it first; if the service closed it, the read
    fails before any byte of an answer and goes out once more on a new connection, never on another kept
    one (which may be as stale)."""
    server = RawService(close_after=1)
    origin = origins(server.port)
    try:
        barrier = threading.Barrier(3)

        def read() -> None:
            barrier.wait()
            assert origin.send("GET", "/warm", None, {}).status == 200

        threads = [threading.Thread(target=read) for _ in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        kept = len(origin._idle)
        assert kept >= 1
        for _ in range(server.connections):
            assert server.closed.acquire(timeout=5)  # the service closed every connection
        polls: list[object] = []
        monkeypatch.setattr("vigil_gateway.proxy.wait_for_read", lambda *args, **kwargs: polls.append(args))
        before = server.connections
        answer = origin.send("GET", "/again", None, {})
        assert answer.status == 200 and answer.data == b"ok"
        assert polls == [], "a bodiless read is not preceded by a liveness poll"
        assert server.connections == before + 1, "one new connection, after one stale one failed"
        assert server.requests.count(b"GET /again HTTP/1.1") == 1
        assert len(origin._idle) == kept  # the stale one closed and dropped, the new one kept
    finally:
        server.close()


def test_a_call_with_a_body_is_sent_only_on_a_connection_seen_open(service, origins):
    origin = origins(service.port)
    assert origin.send("POST", "/a", b"{}", {}).status == 200
    (conn,) = origin._idle
    conn.sock.shutdown(socket.SHUT_RD)  # as a connection the service closed: readable (EOF) at once
    assert origin.send("POST", "/b", b"{}", {}).status == 200
    assert service.connections == 2 and service.requests[-1] == b"POST /b HTTP/1.1"


class _Answered:
    """A socket stand-in holding one answer's bytes (what HTTPResponse reads through ``makefile``)."""

    def __init__(self, raw: bytes):
        self.raw = raw

    def makefile(self, mode: str) -> io.BytesIO:
        return io.BytesIO(self.raw)


_BODY = b'{"id":1}'
ANSWERS = [
    (
        "GET",
        b"HTTP/1.1 200 OK\r\nServer: gunicorn\r\nContent-Type: application/json\r\n"
        b'Content-Length: 8\r\nETag: "1.1"\r\n\r\n' + _BODY,
    ),
    (
        "GET",
        b"HTTP/1.1 200 OK\r\nset-cookie: a=1\r\nSet-Cookie: b=2\r\nX-Empty:\r\nX-Spaced:   v  \r\n"
        b"Content-Length: 8\r\n\r\n" + _BODY,
    ),
    ("GET", b"HTTP/1.1 200 OK\r\nX-Folded: one\r\n two\r\nContent-Length: 8\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\r\nX-Tab:\ta\tb\r\nContent-Length: 8\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\r\nX-Cr: a\rb\r\nContent-Length: 8\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\r\nX-Latin: caf\xe9\x85x\r\nContent-Length: 8\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\r\nnot a field\r\nContent-Length: 8\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\r\n: no name\r\nContent-Length: 8\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\nContent-Length: 8\nX-Lf: only\n\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n" + _BODY + b"\r\n0\r\n\r\n"),
    ("GET", b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 8\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.0 200 OK\r\nContent-Length: 8\r\n\r\n" + _BODY),
    ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n" + _BODY),
    ("HEAD", b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n"),
    ("GET", b"HTTP/1.1 204 NO CONTENT\r\nX-Request-ID: r\r\n\r\n"),
    ("GET", b"HTTP/1.1 304 NOT MODIFIED\r\nETag: x\r\n\r\n"),
    (
        "POST",
        b"HTTP/1.1 100 Continue\r\nX-Early: 1\r\n\r\n"
        b"HTTP/1.1 201 CREATED\r\nLocation: /a/1\r\nContent-Length: 8\r\n\r\n" + _BODY,
    ),
    ("GET", b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\nX-Cut: short"),
]


@pytest.mark.parametrize(("method", "raw"), ANSWERS)
def test_an_answer_reads_as_http_client_reads_it(method, raw):
    """The header block is split without the email parser only where that gives the very same fields."""
    ours, stdlib = (
        UpstreamAnswer(_Answered(raw), method=method),
        http.client.HTTPResponse(_Answered(raw), method=method),
    )
    ours.begin()
    stdlib.begin()
    assert type(ours.headers) is type(stdlib.headers) is http.client.HTTPMessage
    assert ours.headers.items() == stdlib.headers.items()
    assert dict(ours.headers) == dict(stdlib.headers)
    for attribute in ("status", "reason", "version", "chunked", "will_close", "length"):
        assert getattr(ours, attribute) == getattr(stdlib, attribute), attribute
    assert _body(ours) == _body(stdlib)


def _body(response: http.client.HTTPResponse) -> object:
    try:
        return response.read()
    except http.client.HTTPException as error:  # an answer cut short
        return type(error)


def test_a_header_block_over_http_clients_limits_is_refused_as_it_was():
    too_many = b"HTTP/1.1 200 OK\r\n" + b"X-A: 1\r\n" * 101 + b"\r\n"
    too_long = b"HTTP/1.1 200 OK\r\nX-A: " + b"a" * 70_000 + b"\r\n\r\n"
    for raw in (too_many, too_long):
        with pytest.raises(http.client.HTTPException):
            UpstreamAnswer(_Answered(raw), method="GET").begin()


def test_a_plain_header_block_is_split_without_the_email_parser(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("the email parser was used")

    monkeypatch.setattr("vigil_gateway.proxy.email.parser.Parser", refuse)
    answer = UpstreamAnswer(_Answered(ANSWERS[0][1]), method="GET")
    answer.begin()
    assert answer.headers["etag"] == '"1.1"' and answer.read() == _BODY
