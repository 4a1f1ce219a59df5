"""gunicorn's threaded worker, answering what it refuses itself as problem+json instead of HTML.

gunicorn refuses some requests before the app sees them: a request line over ``limit_request_line``
(414), headers over ``limit_request_field_size``/``limit_request_fields`` (431), malformed request
lines, headers or chunk framing (400). Its stock answer is an HTML page; callers of a JSON API get
the same RFC 9457 document, ``X-Request-ID`` and ``nosniff`` as from the app, whatever the size.

It also beats its heartbeat at most once a second (:data:`HEARTBEAT_SECONDS`) instead of on every turn
of its event loop, and a thread that answered on a kept-alive connection waits a moment for that
connection's next request itself (:data:`LINGER_MS`) instead of handing it back to the event loop.

And it keeps its memory from growing under load (:func:`limit_malloc_arenas`, :class:`IdleTrim`), and
hands its place to a fresh worker once idle when its memory stayed high anyway (:class:`IdleRecycle`).
"""

from __future__ import annotations

import json
import logging
import os
import select
import socket
import threading
import time
import uuid
from collections.abc import Callable
from http import HTTPStatus
from ssl import SSLError
from typing import Any

from gunicorn import glogging, util
from gunicorn.http import errors as http_errors
from gunicorn.workers.gthread import ThreadWorker

from .config import WEB_RECYCLE_IDLE_SECONDS, WEB_RECYCLE_RSS_MB
from .errors import PROBLEM_JSON

log = logging.getLogger("vigil.web")


class JsonGunicornLogger(glogging.Logger):  # type: ignore[misc]  # gunicorn ships no type information
    """gunicorn's own messages (started, a worker booted, a worker killed by a signal) as the process's
    JSON lines: through the root handler ``vigil_shared.logs`` installs, not gunicorn's own, whose format
    reads ``%(process)d``, a pid Vigil's records no longer carry (``logging.logProcesses``)."""

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.close()
        self.error_log.handlers = []
        self.error_log.propagate = True


# gunicorn refusal → (status, what the caller is told); anything else it parses badly is a 400.
_REFUSALS = (
    (http_errors.LimitRequestLine, 414, "The URL is too long."),
    (http_errors.LimitRequestHeaders, 431, "The request headers are too large or too many."),
    (http_errors.ExpectationFailed, 417, "The Expect header is not supported."),
    (http_errors.UnsupportedTransferCoding, 501, "The Transfer-Encoding is not supported."),
    (http_errors.ForbiddenProxyRequest, 403, "Proxy requests from this address are refused."),
    (http_errors.ConfigurationProblem, 500, "The server is misconfigured."),
)


def refusal_of(exc: BaseException) -> tuple[int, str]:
    """The status and detail answered for an error gunicorn raised while reading a request."""
    for kind, status, detail in _REFUSALS:
        if isinstance(exc, kind):
            return status, detail
    if isinstance(exc, (http_errors.ParseException, SSLError)):
        if isinstance(exc, (http_errors.InvalidResponseHeader, http_errors.InvalidResponseHeaderName)):
            return 500, "An unexpected error occurred."  # the app's fault, not the caller's
        return 400, f"The request is malformed ({type(exc).__name__})."
    return 500, "An unexpected error occurred. Quote the request id when reporting it."


def problem_http_response(status: int, detail: str, request_id: str) -> bytes:
    phrase = HTTPStatus(status).phrase
    body = json.dumps(
        {"type": "about:blank", "title": phrase, "status": status, "detail": detail, "request_id": request_id}
    ).encode()
    head = (
        f"HTTP/1.1 {status} {phrase}\r\nConnection: close\r\nContent-Type: {PROBLEM_JSON}\r\n"
        f"Content-Length: {len(body)}\r\nX-Content-Type-Options: nosniff\r\nX-Request-ID: {request_id}\r\n\r\n"
    )
    return head.encode("latin-1") + body


# How often a worker tells the arbiter it is alive, at most: far within the arbiter's timeout (60 s).
HEARTBEAT_SECONDS = 1.0

# How long a thread that answered on a kept-alive connection waits for that connection's next request
# before handing the connection back to the event loop (only while every connection can have a thread).
LINGER_MS = 5


# glibc's malloc gives each thread that allocates an arena of its own, up to eight per core, and an arena
# keeps what was freed in it for its next allocations, in pieces that later allocations fit badly. A web
# worker's eight threads (and SQLite, which allocates without holding the GIL) made nine arenas: under a
# sustained mix of customer requests (bench/soak_rss.py) the customer web worker's thread arenas held 55
# MB resident, 30 MB of it free, and that free part grew for as long as the load lasted. Two arenas:
# see docs/performance.md (memory under sustained load) for the figures. glibc's own ``MALLOC_ARENA_MAX``,
# when the environment sets it, decides instead.
MALLOC_ARENAS = 2
_M_ARENA_MAX = -8  # mallopt's parameter number (glibc's malloc.h)


def _glibc() -> Any:
    """The process's C library through ``ctypes`` when it is glibc, else None (musl, macOS)."""
    try:
        if not os.confstr("CS_GNU_LIBC_VERSION"):
            return None
    except (ValueError, OSError):
        return None
    import ctypes  # noqa: PLC0415 - half a megabyte, loaded by web workers only

    return ctypes.CDLL(None)


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """At most ``arenas`` malloc arenas in this process (glibc's ``M_ARENA_MAX``), unless the environment
    sets ``MALLOC_ARENA_MAX``. Called before the worker's threads start (an arena is made at a thread's
    first allocation). Whether the limit was set here."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False
    libc = _glibc()
    return bool(libc is not None and libc.mallopt(_M_ARENA_MAX, arenas))


# After a burst, the free memory in the middle of the heap stays resident until malloc happens to reuse
# it: a worker idle for this long after serving gives it back (``malloc_trim``), once per idle spell.
IDLE_TRIM_SECONDS = 2.0


class IdleTrim:
    """When to give freed memory back: once the worker has been idle :data:`IDLE_TRIM_SECONDS` after
    serving (never twice without a request between, never while requests keep coming)."""

    def __init__(self, trim: Any, idle_seconds: float = IDLE_TRIM_SECONDS) -> None:
        self.trim = trim  # called with no argument
        self.idle_seconds = idle_seconds
        self.last_served: float | None = None  # when the last request was answered, None: trimmed since

    def served(self, now: float) -> None:
        self.last_served = now

    def tick(self, now: float) -> bool:
        """Trims when due; whether it did."""
        last = self.last_served
        if last is None or now - last < self.idle_seconds:
            return False
        self.last_served = None
        self.trim()
        return True


def resident_bytes() -> int | None:
    """This process's resident memory (RSS, as ``ps`` and the idle RSS target count it); None where
    ``/proc`` has no ``statm``."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return None


class IdleRecycle:
    """When a worker hands its place to a fresh one: once it has been idle ``idle_seconds`` after serving,
    nothing in progress, with more than ``ceiling`` bytes resident. Checked once per idle spell.

    What a burst of varied requests leaves behind stays resident after the idle trim (:class:`IdleTrim`):
    statement caches, Python's object arenas, which it returns only when wholly empty, and malloc's
    pieces between them. After a sustained mix of customer requests the customer web worker idled at
    115-135 MB where a fresh one holds 62 (``bench/soak_rss.py``; see docs/performance.md). As uWSGI's
    ``reload-on-rss`` does, the worker then stops taking connections and ends once its own are done
    (gunicorn's graceful stop, as after ``max_requests``), and the arbiter forks a fresh one: the socket
    stays open, so a request arriving meanwhile waits for it instead of being refused. Never under
    load, never with a request in progress: only the first request after a long idle spell may pay a
    fresh worker's first statements.
    """

    def __init__(self, resident: Callable[[], int | None], ceiling: int, idle_seconds: float) -> None:
        self.resident = resident
        self.ceiling = ceiling
        self.idle_seconds = idle_seconds
        self.last_served: float | None = None  # when the last request was answered, None: checked since
        self.found: int | None = None  # the resident bytes that made the last check due

    def served(self, now: float) -> None:
        self.last_served = now

    def tick(self, now: float, busy: bool) -> bool:
        """Whether the worker should hand its place over now (checks its memory once per idle spell)."""
        last = self.last_served
        if busy or last is None or now - last < self.idle_seconds:
            return False
        self.last_served = None
        self.found = self.resident()
        return self.found is not None and self.found > self.ceiling


class ProblemThreadWorker(ThreadWorker):  # type: ignore[misc]  # gunicorn ships no type information
    """gthread, with problem+json refusals (set as ``worker_class`` by ``runtime.run_gunicorn``)."""

    _last_beat = float("-inf")
    _idle_trim: IdleTrim | None = None
    _idle_recycle: IdleRecycle | None = None
    alive: bool  # gunicorn's: the worker serves while it is true
    _in_progress = 0  # requests being handled (``handle``), under ``_in_progress_lock``
    # resident memory above which an idle worker hands its place to a fresh one (0: never), and after
    # how long idle; ``run_gunicorn`` sets them from the process's settings (VIGIL_WEB_RECYCLE_*)
    recycle_rss_mb: int = WEB_RECYCLE_RSS_MB
    recycle_idle_seconds: float = WEB_RECYCLE_IDLE_SECONDS

    @classmethod
    def recycling(cls, rss_mb: int, idle_seconds: float) -> type[ProblemThreadWorker]:
        """This worker class with the given :class:`IdleRecycle` ceiling and idle spell."""
        return type(cls.__name__, (cls,), {"recycle_rss_mb": rss_mb, "recycle_idle_seconds": idle_seconds})

    def init_process(self) -> None:
        """Limits the malloc arenas before any thread starts, then serves (gthread's own start)."""
        limit_malloc_arenas()
        libc = _glibc()
        if libc is not None:
            self._idle_trim = IdleTrim(lambda: libc.malloc_trim(0))
        if self.recycle_rss_mb > 0 and resident_bytes() is not None:
            self._idle_recycle = IdleRecycle(
                resident_bytes, self.recycle_rss_mb * 1024 * 1024, self.recycle_idle_seconds
            )
        self._in_progress = 0
        self._in_progress_lock = threading.Lock()
        super().init_process()

    def notify(self) -> None:
        """The heartbeat (a system call setting a file's times, which the arbiter reads) at most once a
        second. gthread beats on every turn of its event loop, which turns twice for each request on a
        kept-alive connection; gunicorn asks for one beat within its timeout. The event loop turns at
        least once a second when idle, so this is also where freed memory is given back when due, and
        where an idle worker still holding too much hands its place over (:class:`IdleRecycle`)."""
        now = time.monotonic()
        if now - self._last_beat >= HEARTBEAT_SECONDS:
            self._last_beat = now
            super().notify()
        if self._idle_trim is not None:
            self._idle_trim.tick(now)
        recycle = self._idle_recycle
        if recycle is not None and self.alive and recycle.tick(now, busy=self._in_progress > 0):
            log.info(
                "web worker handing its place to a fresh one: %.1f MB resident after %.0f s idle, above "
                "VIGIL_WEB_RECYCLE_RSS_MB=%d",
                (recycle.found or 0) / 1024 / 1024,
                recycle.idle_seconds,
                self.recycle_rss_mb,
            )
            self.alive = False  # gthread's graceful stop; the arbiter forks the next worker

    def handle(self, conn: Any) -> Any:
        """gthread's handling of one request, then of the connection's next ones while they come soon.

        gthread hands a kept-alive connection back to its event loop after every answer: the thread
        queues a callback for the main thread, which registers the socket with its selector, wakes when
        the next request arrives, unregisters it and submits it to the pool again, three thread
        switches and about a twentieth of a small read's instructions (``bench/count_property_read.py``).
        Callers that send their next request right away (the gateway's pooled connections to a
        service, a browser's burst) are served by the same thread instead. Fairness is kept: the
        thread stops waiting as soon as the worker holds more connections than threads, and a wait
        lasts at most :data:`LINGER_MS`, so a new connection waits no longer than that for a thread.
        """
        with self._in_progress_lock:
            self._in_progress += 1
        try:
            outcome = super().handle(conn)
            while outcome is True and self._next_request_comes(conn):
                outcome = super().handle(conn)
        finally:
            with self._in_progress_lock:
                self._in_progress -= 1
            now = time.monotonic()
            if self._idle_trim is not None:
                self._idle_trim.served(now)
            if self._idle_recycle is not None:
                self._idle_recycle.served(now)
        return outcome

    def _next_request_comes(self, conn: Any) -> bool:
        """Whether ``conn``'s next request arrived within :data:`LINGER_MS` and this thread may serve it."""
        if not self.alive or conn.is_http2 or self.nr_conns > self.cfg.threads:
            return False
        if conn.parser.unreader.buf.getvalue():  # already read ahead with the last body
            return True
        poll = select.poll()
        poll.register(conn.sock.fileno(), select.POLLIN)
        return bool(poll.poll(LINGER_MS))

    def handle_error(self, req: Any, client: socket.socket, addr: Any, exc: BaseException) -> None:
        status, detail = refusal_of(exc)
        request_id = uuid.uuid4().hex
        if status >= 500:
            self.log.exception("Error handling request (request_id=%s)", request_id)
        else:
            self.log.warning(
                "Invalid request from ip=%s: %s (%s, request_id=%s)",
                (addr or ("",))[0],
                type(exc).__name__,
                status,
                request_id,
            )
        try:
            util.write_nonblock(client, problem_http_response(status, detail, request_id))
        except Exception:  # noqa: BLE001 - the client may be gone; nothing else to do
            self.log.debug("Failed to send error message.")
