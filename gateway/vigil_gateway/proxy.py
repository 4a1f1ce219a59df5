"""Forwarding a public request to the service that owns it.

Every public call crosses this hop, so a forwarded call goes out on ``http.client`` itself: pooled
keep-alive connections per service (:class:`Origin`), explicit timeouts, and about half the CPU of
the same call made through urllib3 (kept for the gateway's other outgoing calls: webhooks, the
OpenAPI documents, integrations).
"""

from __future__ import annotations

import email.parser
import http.client
import logging
import re
import socket
import ssl
import struct
import sys
import threading
from dataclasses import dataclass
from http.client import HTTPMessage
from typing import Any
from urllib.parse import quote, urlsplit

import urllib3
from flask import Response, current_app, g, request
from urllib3.exceptions import HTTPError as Urllib3Error
from urllib3.util.wait import wait_for_read
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from vigil_shared.errors import UNAVAILABLE, Problem, not_found
from vigil_shared.identity import BINDING_HEADER, IDENTITY_HEADER
from vigil_shared.pid import current_pid
from vigil_shared.web import REQUEST_ID_HEADER

log = logging.getLogger("vigil.gateway.proxy")

# Headers a caller may send on to a service; everything else (Authorization, cookies, hop-by-hop)
# stops at the gateway.
FORWARDED_REQUEST_HEADERS = (
    "Content-Type",
    "Accept",
    "Accept-Language",
    "If-Match",
    "If-None-Match",
    "Idempotency-Key",
    "Prefer",
)
# each as WSGI names it in the environ (read there: werkzeug's header view costs a lookup per name)
_FORWARDED_ENVIRON = tuple(
    (name, name.upper().replace("-", "_") if name == "Content-Type" else "HTTP_" + name.upper().replace("-", "_"))
    for name in FORWARDED_REQUEST_HEADERS
)
PATH_SAFE = "/:@!$&'()*+,;=-._~"  # RFC 3986 pchar delimiters kept as they are
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailers",
        "transfer-encoding",
        "upgrade",
        "content-length",
    }
)


_REQUEST_ID_LOWER = REQUEST_ID_HEADER.lower()
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
CONNECT_TIMEOUT = 2.0  # seconds
MAX_IDLE_CONNECTIONS = 32  # per service and process, as urllib3's pools kept; more are opened when needed


class UpstreamError(Urllib3Error):
    """A service could not be reached, or its answer could not be read (a urllib3 ``HTTPError``, so the
    callers that caught urllib3's errors catch this one)."""


@dataclass(slots=True)
class Upstream:
    """A service's whole answer."""

    status: int
    headers: HTTPMessage
    data: bytes


# A plain header block: ``Name: value`` lines of printable ASCII (a name as email's parser takes one:
# no colon, no space), each ending in CRLF or LF, then the blank line.
_PLAIN_BLOCK = re.compile(rb"(?:[\x21-\x39\x3b-\x7e]+:[\x20-\x7e]*\r?\n)*\r?\n")


def parse_header_block(fp: Any) -> HTTPMessage:
    """``http.client.parse_headers`` (the same limits, fields in the same order, the same ``HTTPMessage``)
    without the email package's parser for a plain block: about 45 of the 60 µs http.client spent on a
    service's answer. A block of nothing but printable ASCII ``Name: value`` lines is split here; anything
    else (a folded line, a tab or any other control character, a byte over 127, a line that is not a
    field, a block cut short) goes to the email parser ``http.client.parse_headers`` uses, as it was read,
    so it is read exactly as before."""
    # the stdlib's reading and its limits (line length, count)
    lines = http.client._read_headers(fp)  # type: ignore[attr-defined]
    block = b"".join(lines)
    if not _PLAIN_BLOCK.fullmatch(block):
        return email.parser.Parser(_class=HTTPMessage).parsestr(block.decode("iso-8859-1"))
    message = HTTPMessage()
    rows = block.decode("ascii").splitlines()
    rows.pop()  # the blank line
    for row in rows:
        name, _, value = row.partition(":")
        message[name] = value.lstrip(" ")
    return message


class UpstreamAnswer(http.client.HTTPResponse):
    """``http.client.HTTPResponse`` whose header block is read by :func:`parse_header_block`: ``begin`` is the
    stdlib's (Python 3.11-3.13), that one call aside."""

    def begin(self) -> None:
        if self.headers is not None:
            return
        while True:  # until a final (not 100) answer
            version, status, reason = self._read_status()
            if status != http.client.CONTINUE:
                break
            http.client._read_headers(self.fp)  # the 100 answer's headers, skipped
        self.code = self.status = status
        self.reason = reason.strip()
        if version in ("HTTP/1.0", "HTTP/0.9"):
            self.version = 10
        elif version.startswith("HTTP/1."):
            self.version = 11
        else:
            raise http.client.UnknownProtocol(version)
        self.headers = self.msg = parse_header_block(self.fp)
        transfer_encoding = self.headers.get("transfer-encoding")
        if transfer_encoding and transfer_encoding.lower() == "chunked":
            self.chunked = True
            self.chunk_left = None
        else:
            self.chunked = False
        self.will_close = self._check_close()
        self.length = None
        length = self.headers.get("content-length")
        if length and not self.chunked:
            try:
                self.length = int(length)
            except ValueError:
                self.length = None
            else:
                if self.length < 0:
                    self.length = None
        if (
            status in (http.client.NO_CONTENT, http.client.NOT_MODIFIED)
            or 100 <= status < 200
            or self._method == "HEAD"
        ):
            self.length = 0
        if not self.will_close and not self.chunked and self.length is None:
            self.will_close = True


# UpstreamAnswer.begin is the standard library's of these versions; on any other the stdlib's own is used.
READS_ANSWERS_ITSELF = (3, 11) <= sys.version_info[:2] <= (3, 13)


class KernelTimedSocket(socket.socket):
    """A blocking socket whose waits the kernel bounds (``SO_RCVTIMEO``/``SO_SNDTIMEO``, see
    :func:`kernel_timed`): each send and receive is one system call. A socket with a Python timeout polls
    before every one of them, and each poll lets go of the GIL once more. A wait that runs out is the
    same ``TimeoutError`` (``socket.timeout``) a Python timeout raises."""

    __slots__ = ()

    def recv_into(self, buffer, nbytes=0, flags=0):
        try:
            return super().recv_into(buffer, nbytes, flags)
        except BlockingIOError:  # EAGAIN: SO_RCVTIMEO ran out
            raise TimeoutError("timed out") from None

    def sendall(self, data, flags=0):
        try:
            return super().sendall(data, flags)
        except BlockingIOError:  # EAGAIN: SO_SNDTIMEO ran out
            raise TimeoutError("timed out") from None


def kernel_timed(sock: socket.socket, timeout: float | None) -> KernelTimedSocket:
    """``sock`` (connected, plain TCP) as a :class:`KernelTimedSocket` whose every send and receive waits at
    most ``timeout`` seconds (None: no bound, as ``settimeout(None)``)."""
    timed = KernelTimedSocket(sock.family, sock.type, sock.proto, sock.detach())
    timed.settimeout(None)
    if timeout is not None:
        seconds = max(timeout, 0.000001)  # a zero timeval would mean "wait for ever"
        timeval = struct.pack("ll", int(seconds), int(seconds % 1 * 1_000_000))
        timed.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)
        timed.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    return timed


class Origin:
    """Keep-alive ``http.client`` connections to one service, the most recently used first."""

    def __init__(self, base_url: str, connect_timeout: float | None, read_timeout: float | None):
        parsed = urlsplit(base_url)
        if parsed.scheme not in ("http", "https") or not parsed.hostname:
            raise ValueError(f"not a service URL: {base_url!r}")
        self.https = parsed.scheme == "https"
        self.host = parsed.hostname
        self.port = parsed.port or (443 if self.https else 80)
        self.connect_timeout, self.read_timeout = connect_timeout, read_timeout
        self._idle: list[http.client.HTTPConnection] = []
        self._lock = threading.Lock()

    def _connect(self) -> http.client.HTTPConnection:
        if self.https:
            conn: http.client.HTTPConnection = http.client.HTTPSConnection(
                self.host, self.port, timeout=self.connect_timeout, context=ssl.create_default_context()
            )
        else:
            conn = http.client.HTTPConnection(self.host, self.port, timeout=self.connect_timeout)
        if READS_ANSWERS_ITSELF:
            conn.response_class = UpstreamAnswer
        conn.connect()  # sets TCP_NODELAY
        if conn.sock is not None:
            if self.https:
                conn.sock.settimeout(self.read_timeout)
            else:
                conn.sock = kernel_timed(conn.sock, self.read_timeout)
        return conn

    def _checkout(self, probe: bool) -> http.client.HTTPConnection | None:
        """An idle connection, or None. With ``probe``, one still open: one the service closed, or that holds
        unread bytes, is readable and dropped, as urllib3 does before reusing one. Without it (a bodiless
        idempotent call, see :meth:`send`) the connection is taken as it is."""
        while True:
            with self._lock:
                if not self._idle:
                    return None
                conn = self._idle.pop()
            if conn.sock is not None and not (probe and wait_for_read(conn.sock, timeout=0.0)):
                return conn
            conn.close()

    def _checkin(self, conn: http.client.HTTPConnection) -> None:
        with self._lock:
            if len(self._idle) < MAX_IDLE_CONNECTIONS:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Closes the idle connections (those in use are closed or kept when their call ends)."""
        with self._lock:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def send(self, method: str, target: str, body: bytes | None, headers: dict) -> Upstream:
        """One exchange. A failed call is tried once more, on a fresh connection: for an idempotent method
        whatever failed, for another only when nothing was sent (the connect failed). So a bodiless
        idempotent call (a forwarded read) takes an idle connection without the liveness poll: should the
        service have closed it, the call fails before any byte of an answer and is sent again on a new
        connection, as a read allows. A call with a body, or not idempotent, is sent only on a connection
        seen open, and never twice once it may have reached the service."""
        idempotent = method in IDEMPOTENT_METHODS
        probe = body is not None or not idempotent
        retry = True
        while True:
            conn = self._checkout(probe) if retry else None
            sent = False
            try:
                if conn is None:
                    conn = self._connect()
                sent = True
                conn.request(method, target, body=body, headers=headers)  # a base URL's path is not used, as before
                response = conn.getresponse()
                data = response.read()
            except (OSError, http.client.HTTPException) as error:
                if conn is not None:
                    conn.close()
                if retry and (idempotent or not sent):
                    retry = False
                    continue
                raise UpstreamError(f"{type(error).__name__}: {error}") from error
            except BaseException:
                if conn is not None:
                    conn.close()
                raise
            if response.will_close:
                conn.close()
            else:
                self._checkin(conn)
            return Upstream(response.status, response.headers, data)


class UpstreamPool:
    """One urllib3 pool manager per process (re-created after fork)."""

    def __init__(self, timeout: float):
        self.read_timeout = timeout
        self.timeout = urllib3.Timeout(connect=CONNECT_TIMEOUT, read=timeout)
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None
        self._pid: int | None = None
        self._origins: dict[str, Origin] = {}  # a service's base URL -> its connections
        self._origins_pid: int | None = None

    @property
    def pool(self) -> urllib3.PoolManager:
        if self._pool is None or self._pid != current_pid():
            with self._lock:
                if self._pool is None or self._pid != current_pid():
                    self._pool = urllib3.PoolManager(num_pools=16, maxsize=32, block=False)
                    self._pid = current_pid()
        return self._pool

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict) -> urllib3.BaseHTTPResponse:
        return self.pool.request(method, url, body=body, headers=headers, **self._options())

    def send(self, method: str, base_url: str, target: str, *, body: bytes | None, headers: dict) -> Upstream:
        """One call of ``target`` (a path and query) on the service at ``base_url`` (a service's, from the
        settings), over that service's own pool of keep-alive ``http.client`` connections.

        The pool manager's URL parsing and pool lookup were a sixth of the urllib3 call, and urllib3's
        own layers (its retry and timeout objects, connection checks, response wrapper) most of the
        rest of what forwarding cost beyond http.client itself. The rules kept from urllib3: a pooled
        connection the service closed is noticed before it is reused; a failed call is retried once on
        a fresh connection for idempotent methods, and for others only when nothing was sent (the
        connect failed); any failure is an :class:`UpstreamError` (a urllib3 ``HTTPError``)."""
        pools = self._origins if self._origins_pid == current_pid() else None
        origin = pools.get(base_url) if pools is not None else None
        if origin is None:
            origin = Origin(base_url, CONNECT_TIMEOUT, self.read_timeout)
            with self._lock:
                if self._origins_pid != current_pid():
                    self._origins, self._origins_pid = {}, current_pid()
                origin = self._origins.setdefault(base_url, origin)
        return origin.send(method, target, body, headers)

    def _options(self) -> dict:
        # A pooled connection the service closed is retried once for idempotent methods only;
        # a failed connect is always safe to retry because nothing was sent.
        retries = urllib3.Retry(total=1, connect=1, read=1, redirect=0, status=0, other=0, raise_on_status=False)
        return {
            "timeout": self.timeout,
            "retries": retries,
            "redirect": False,
            "preload_content": True,
            "decode_content": False,
        }


def upstream_headers(environ: dict, request_id: str, identity_token: str, identity_binding: str) -> dict[str, str]:
    """What a forwarded call sends the service: the caller's :data:`FORWARDED_REQUEST_HEADERS`, this call's
    request id, the (reused) identity token with ``identity_binding`` binding the request id to it, and
    where the call came from (as ``request.remote_addr`` and ``request.scheme`` name it)."""
    headers = {name: environ[key] for name, key in _FORWARDED_ENVIRON if key in environ}
    headers[REQUEST_ID_HEADER] = request_id
    headers[IDENTITY_HEADER] = identity_token
    headers[BINDING_HEADER] = identity_binding
    headers["X-Forwarded-For"] = environ.get("REMOTE_ADDR") or ""
    headers["X-Forwarded-Proto"] = environ.get("wsgi.url_scheme", "http")
    return headers


def upstream_target(path: str, query: str) -> str:
    """The path as the caller sent it (re-quoted), so %2F, spaces and the like reach the service intact."""
    return quote(path, safe=PATH_SAFE) + (f"?{query}" if query else "")


def passed_headers(upstream: Upstream) -> list[tuple[str, str]]:
    """The service's answer headers the caller receives: neither hop-by-hop ones nor its request id (the
    gateway sets its own)."""
    return [
        (name, value)
        for name, value in upstream.headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() != _REQUEST_ID_LOWER
    ]


def unavailable(service: str, request_id: str, error: BaseException) -> Problem:
    log.warning(
        "upstream unavailable", extra={"service": service, "request_id": request_id, "error": type(error).__name__}
    )
    return Problem(
        503,
        f"The {service} service is unavailable. Try again shortly.",
        type=UNAVAILABLE,
        headers={"Retry-After": "5"},
    )


# Set by the WSGI fast path (vigil_gateway.fastpath) when it forwarded a read the service did not answer:
# the request is handed to Flask, which answers the 503 without sending the read a second time.
UPSTREAM_FAILED_KEY = "vigil.gateway.upstream_failed"


def forward(pool: UpstreamPool, service: str, base_url: str, identity_token: str, identity_binding: str) -> Response:
    """``identity_binding`` binds this call's request id to the (reused) identity token."""
    environ = request.environ
    failed = environ.pop(UPSTREAM_FAILED_KEY, None)
    if failed is not None:
        raise unavailable(service, g.request_id, failed) from None
    headers = upstream_headers(environ, g.request_id, identity_token, identity_binding)
    # Whole or not at all: the request layer (vigil_shared.guards) has already read a chunked body
    # completely or answered 413, so what is forwarded is never a body cut at the limit.
    body = request.get_data(cache=True) if request.method in ("POST", "PUT", "PATCH", "DELETE") else None
    target = upstream_target(request.path, request.query_string.decode("latin-1"))
    try:
        upstream = pool.send(request.method, base_url, target, body=body or None, headers=headers)
    except Urllib3Error as exc:
        raise unavailable(service, g.request_id, exc) from None
    return Response(upstream.data, status=upstream.status, headers=passed_headers(upstream))


PROXY_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


def gateway_methods(proxy_endpoint: str = "proxy") -> list[str]:
    """The methods the gateway itself answers on this path (its own routes, not the catch-all)."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = []
    for method in PROXY_METHODS:
        try:
            endpoint, _ = adapter.match(method=method)
        except (HTTPException, RequestRedirect):
            continue
        if endpoint != proxy_endpoint:
            allowed.append(method)
    return allowed


def unrouted() -> Problem:
    """A path no service owns: 405 with the real ``Allow`` when the gateway answers it with other
    methods (``PUT /users/1``), 404 otherwise. The catch-all never invents methods."""
    allowed = gateway_methods()
    if not allowed:
        return not_found("resource")
    return Problem(
        405, "The method is not allowed for this resource.", headers={"Allow": ", ".join([*allowed, "OPTIONS"])}
    )
