"""The forwarded read below Flask: ``GET``/``HEAD`` of a path a service owns, without a body.

Nearly every public call is a read the gateway only forwards. Through Flask such a read paid for the
request and app contexts, ``g``, the URL match, four ``before_request`` and two ``after_request`` hooks
and werkzeug's request object, about as much CPU as the forwarding itself. :class:`FastPath` wraps
Flask's WSGI app and answers those reads itself with the very same pieces the Flask path uses, in the
same order:

- the request id (:func:`vigil_shared.web.request_id_of`);
- the input rules (:func:`vigil_shared.guards.passes_without_body`: path, headers, query);
- authentication (:func:`vigil_gateway.authn.cached_entry`: the same token or API key checks against
  ``auth_state.epoch`` read on this call, so a revocation applies on the next call as before);
- the forwarded headers, target and pooled call (:mod:`vigil_gateway.proxy`);
- the audit of confidential reads, ``X-Request-ID``, ``nosniff`` and the access log line;
- the answer Flask's response class would send: built by it, or for a plain answer (the common one,
  :func:`wsgi_headers`) the same status line and headers in the same order, built directly.

It never judges a request differently from Flask: whatever it would not answer exactly as Flask does
is handed to Flask untouched (falls through): any other method, a body, a path that is one of the
gateway's own routes or that no service owns, anything the input rules or authentication would refuse
(so every 401, 404, 405 and 422 is Flask's), an identity not resolved yet (Flask resolves and caches
it), and any error (Flask then meets it again and answers it its way; should that happen after the
service answered, Flask sends the read once more, which a read allows). A service that cannot be
reached is not called twice: the request is handed to Flask marked
(:data:`~vigil_gateway.proxy.UPSTREAM_FAILED_KEY`), which answers its 503.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from flask import Flask, g
from urllib3.exceptions import HTTPError as Urllib3Error
from werkzeug.exceptions import HTTPException
from werkzeug.http import HTTP_STATUS_CODES
from werkzeug.routing import RequestRedirect

from vigil_shared import guards
from vigil_shared.web import CONFIDENTIAL_READS_HEADER, REQUEST_ID_HEADER, log_request, request_id_of

from . import audit
from .authn import cached_entry, needs_authentication, note_key_use
from .proxy import UPSTREAM_FAILED_KEY, UpstreamPool, passed_headers, upstream_headers, upstream_target
from .routing import service_for
from .settings import GatewaySettings

log = logging.getLogger("vigil.gateway.fastpath")

READ_METHODS = frozenset({"GET", "HEAD"})
MAX_ROUTES = 10_000  # paths whose route is remembered (cleared when full; a lookup costs a URL match)
_REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict, StartResponse], Iterable[bytes]]


class FastPath:
    """WSGI middleware around the gateway's Flask app (inside ``ProxyFix``, which has set the client's
    address and scheme by then)."""

    def __init__(
        self, app: Flask, wsgi_app: WsgiApp, settings: GatewaySettings, pool: UpstreamPool, proxy_endpoint: str
    ):
        self.app = app
        self.flask = wsgi_app
        self.settings = settings
        self.pool = pool
        self.proxy_endpoint = proxy_endpoint
        self.response_class = app.response_class
        self._routes: dict[tuple[str, str], str | None] = {}

    def service_of(self, method: str, path: str) -> str | None:
        """The service a ``method`` on ``path`` is forwarded to by Flask's catch-all ``proxy`` route, or None
        when Flask would answer it otherwise (one of the gateway's own routes, a redirect, a path no
        service owns). Remembered per path: the URL map does not change once the app serves."""
        key = (method, path)
        try:
            return self._routes[key]
        except KeyError:
            pass
        service = None
        try:
            endpoint, _ = self.app.url_map.bind("fastpath.invalid").match(path, method=method)
        except (HTTPException, RequestRedirect):
            endpoint = None
        if endpoint == self.proxy_endpoint:
            service = service_for(path)
        if len(self._routes) >= MAX_ROUTES:
            self._routes.clear()
        self._routes[key] = service
        return service

    def __call__(self, environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        method = environ.get("REQUEST_METHOD")
        if (
            method not in READ_METHODS
            or environ.get("CONTENT_LENGTH") not in (None, "", "0")
            or "HTTP_TRANSFER_ENCODING" in environ
        ):
            return self.flask(environ, start_response)
        try:
            answer = self._answer(environ, method)
        except Exception:  # noqa: BLE001 - Flask answers it, and its error handlers log and shape the error
            log.debug("fast path declined after an error", exc_info=True)
            answer = None
        if answer is None:
            return self.flask(environ, start_response)
        if isinstance(answer, tuple):
            status, headers, body = answer
            start_response(status, headers)
            return body
        return answer(environ, start_response)

    def _answer(self, environ: dict, method: str) -> Any:
        """The response to send (Flask's response class), or None to hand the request to Flask."""
        started = time.perf_counter()
        # werkzeug's request.path (vigil_shared.web and the proxy read that one)
        path = "/" + (environ.get("PATH_INFO") or "").encode("latin1").decode(errors="replace").lstrip("/")
        if not path.startswith("/api/v1/") or not needs_authentication(path):
            return None
        service = self.service_of(method, path)
        if service is None or not guards.passes_without_body(environ, path):
            return None
        request_id = request_id_of(environ.get(_REQUEST_ID_ENVIRON, ""))
        cache = self.app.extensions["vigil_gateway_identity_cache"]
        entry = cached_entry(self.settings, cache, environ)
        if entry is None:
            return None
        if entry.key_id is not None:  # an API key's use is recorded (a user's session has no key to note)
            note_key_use(self.app.extensions["vigil_gateway_db"], entry)
        base = self.settings.base
        token, binding = cache.signed_token(entry, base.internal_secret, base.identity_token_ttl, request_id)
        headers = upstream_headers(environ, request_id, token, binding)
        target = upstream_target(path, environ.get("QUERY_STRING", ""))
        try:
            upstream = self.pool.send(method, self.settings.service_urls[service], target, body=None, headers=headers)
        except Urllib3Error as error:
            environ[UPSTREAM_FAILED_KEY] = error
            return None
        passed = passed_headers(upstream)
        plain = wsgi_headers(upstream.status, passed, upstream.data, request_id)
        if plain is not None:
            log_request(request_id, method, path, upstream.status, started, entry.identity.username)
            return status_line(upstream.status), plain, [upstream.data] if method == "GET" else []
        response = self.response_class(upstream.data, status=upstream.status, headers=passed)
        if CONFIDENTIAL_READS_HEADER in response.headers:
            self._audit(environ, response, request_id, entry)
        response.headers[REQUEST_ID_HEADER] = request_id
        response.headers["X-Content-Type-Options"] = "nosniff"
        log_request(request_id, method, path, response.status_code, started, entry.identity.username)
        return response

    def _audit(self, environ: dict, response: Any, request_id: str, entry: Any) -> None:
        """The audit entries of a response that shows confidential values (rare: in Flask's request context,
        as the ``after_request`` hook records them)."""
        with self.app.request_context(environ):
            g.request_id = request_id
            g.identity = entry.identity.with_request_id(request_id)
            audit.confidential_reads(self.app.extensions["vigil_gateway_db"], response)


# What werkzeug's response does more than the plain answer below: a Location or Content-Location made a
# URI, the audit header popped (the after_request hook), no body or no Content-Length for some statuses.
_NOT_PLAIN = frozenset({"location", "content-location", CONFIDENTIAL_READS_HEADER.lower()})


def wsgi_headers(
    status: int, passed: list[tuple[str, str]], data: bytes, request_id: str
) -> list[tuple[str, str]] | None:
    """The headers Flask sends for ``Response(data, status=status, headers=passed)`` once the gateway's
    ``after_request`` hooks have set ``X-Request-ID`` and ``nosniff``, in werkzeug's order, or None when
    the answer needs werkzeug's response itself (see ``_NOT_PLAIN``; a 1xx, 204 or 304; no
    ``Content-Type``, which werkzeug would add; a value holding a line break, which werkzeug refuses).
    ``passed`` never holds ``Content-Length`` or ``X-Request-ID`` (:func:`~vigil_gateway.proxy.passed_headers`),
    so werkzeug appends both; ``nosniff`` replaces the service's own in place, as ``Headers.set`` does."""
    if status < 200 or status in (204, 304):
        return None
    typed = False
    for name, value in passed:
        lowered = name.lower()
        if lowered in _NOT_PLAIN or "\n" in value or "\r" in value:
            return None
        if lowered == "content-type":
            typed = True
    if not typed:
        return None
    headers = [*passed, ("Content-Length", str(len(data))), (REQUEST_ID_HEADER, request_id)]
    _set(headers, "X-Content-Type-Options", "nosniff")
    return headers


def _set(headers: list[tuple[str, str]], name: str, value: str) -> None:
    """werkzeug's ``Headers.set``: the first header of that name replaced (name and value), the others
    of that name dropped; appended when there is none."""
    lowered = name.lower()
    for index, (key, _) in enumerate(headers):
        if key.lower() == lowered:
            headers[index] = (name, value)
            headers[index + 1 :] = [item for item in headers[index + 1 :] if item[0].lower() != lowered]
            return
    headers.append((name, value))


def status_line(status: int) -> str:
    """werkzeug's status line of a response made with an integer status."""
    phrase = HTTP_STATUS_CODES.get(status)
    return f"{status} {phrase.upper()}" if phrase is not None else f"{status} UNKNOWN"
