"""Forwarding a public request to the service that owns it.

urllib3 directly (not requests): pooled keep-alive connections per service, explicit timeouts, and
a fraction of the per-call CPU, which matters because every public call crosses this hop.
"""

from __future__ import annotations

import logging
import os
import threading
from urllib.parse import quote

import urllib3
from flask import Response, current_app, g, request
from urllib3.exceptions import HTTPError as Urllib3Error
from werkzeug.exceptions import HTTPException
from werkzeug.routing import RequestRedirect

from vigil_shared.errors import UNAVAILABLE, Problem, not_found
from vigil_shared.identity import BINDING_HEADER, IDENTITY_HEADER
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


class UpstreamPool:
    """One urllib3 pool manager per process (re-created after fork)."""

    def __init__(self, timeout: float):
        self.timeout = urllib3.Timeout(connect=2.0, read=timeout)
        self._lock = threading.Lock()
        self._pool: urllib3.PoolManager | None = None
        self._pid: int | None = None
        self._origins: dict[str, urllib3.HTTPConnectionPool] = {}  # a service's base URL -> its pool
        self._origins_pid: int | None = None

    @property
    def pool(self) -> urllib3.PoolManager:
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    self._pool = urllib3.PoolManager(num_pools=16, maxsize=32, block=False)
                    self._pid = os.getpid()
        return self._pool

    def request(self, method: str, url: str, *, body: bytes | None, headers: dict) -> urllib3.BaseHTTPResponse:
        return self.pool.request(method, url, body=body, headers=headers, **self._options())

    def send(
        self, method: str, base_url: str, target: str, *, body: bytes | None, headers: dict
    ) -> urllib3.BaseHTTPResponse:
        """:meth:`request` of ``base_url + target`` (a path and query) on the service's own connection pool,
        looked up by its base URL (a service's, from the settings): the pool manager's parsing of each URL
        and its lookup of the pool were a sixth of the forwarding call."""
        pools = self._origins if self._origins_pid == os.getpid() else None
        origin = pools.get(base_url) if pools is not None else None
        if origin is None:
            origin = urllib3.connection_from_url(base_url, maxsize=32, block=False)  # its own, never evicted
            with self._lock:
                if self._origins_pid != os.getpid():
                    self._origins, self._origins_pid = {}, os.getpid()
                self._origins[base_url] = origin
        return origin.urlopen(method, target, body=body, headers=headers, assert_same_host=False, **self._options())

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


def forward(pool: UpstreamPool, service: str, base_url: str, identity_token: str, identity_binding: str) -> Response:
    """``identity_binding`` binds this call's request id to the (reused) identity token."""
    headers = {name: request.headers[name] for name in FORWARDED_REQUEST_HEADERS if name in request.headers}
    headers[REQUEST_ID_HEADER] = g.request_id
    headers[IDENTITY_HEADER] = identity_token
    headers[BINDING_HEADER] = identity_binding
    headers["X-Forwarded-For"] = request.remote_addr or ""
    headers["X-Forwarded-Proto"] = request.scheme
    # Whole or not at all: the request layer (vigil_shared.guards) has already read a chunked body
    # completely or answered 413, so what is forwarded is never a body cut at the limit.
    body = request.get_data(cache=True) if request.method in ("POST", "PUT", "PATCH", "DELETE") else None
    query = request.query_string.decode("latin-1")
    # The path as the caller sent it (re-quoted), so %2F, spaces and the like reach the service intact.
    target = quote(request.path, safe=PATH_SAFE) + (f"?{query}" if query else "")
    try:
        upstream = pool.send(request.method, base_url, target, body=body or None, headers=headers)
    except Urllib3Error as exc:
        log.warning(
            "upstream unavailable", extra={"service": service, "request_id": g.request_id, "error": type(exc).__name__}
        )
        raise Problem(
            503,
            f"The {service} service is unavailable. Try again shortly.",
            type=UNAVAILABLE,
            headers={"Retry-After": "5"},
        ) from None
    passed = [
        (name, value)
        for name, value in upstream.headers.items()
        if name.lower() not in HOP_BY_HOP and name.lower() != REQUEST_ID_HEADER.lower()
    ]
    return Response(upstream.data, status=upstream.status, headers=passed)


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
