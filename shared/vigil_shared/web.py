"""The Flask app every service is built on: one behaviour for ids, identity, errors, logs and health.

A service's ``create_app`` calls :func:`create_service_app` with its settings, database and
blueprints; everything a caller can rely on across services (problem+json, ``X-Request-ID``,
401 without a gateway identity, 415 for non-JSON bodies, JSON request logs, ``/healthz`` and
``/readyz``) is set up here once, and so are the input rules of :mod:`vigil_shared.guards`
(bounded ids, no control characters, bounded JSON depth, body size whatever the framing) and
``X-Content-Type-Options: nosniff`` on every response.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable
from functools import wraps
from typing import Any, TypeVar, cast

from flask import Flask, Response, g, request
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields

from . import guards
from .apidoc import OperationDocPlugin, View

# Re-exported for views: what a view needs comes from here, wherever it is defined.
from .authz import current_identity, require, requires  # noqa: F401
from .commands import ANYWHERE, Context, forbidden  # noqa: F401
from .config import Settings
from .db import Database
from .errors import UNAUTHENTICATED, Problem, register_error_handlers
from .health import WEB_OPTIONAL_CHECKS, add_health_routes, run_checks  # noqa: F401
from .http import PreconditionPlugin
from .identity import BINDING_HEADER, IDENTITY_HEADER, InvalidIdentity, verify_identity
from .logs import configure_logging, log_fields
from .service import current_runtime, request_outbox, request_session  # noqa: F401

REQUEST_ID_HEADER = "X-Request-ID"
CONFIDENTIAL_READS_HEADER = "X-Vigil-Confidential-Reads"  # service → gateway only, recorded in the audit log
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
_REQUEST_ID_ENVIRON = "HTTP_" + REQUEST_ID_HEADER.upper().replace("-", "_")
_IDENTITY_ENVIRON = "HTTP_" + IDENTITY_HEADER.upper().replace("-", "_")
_BINDING_ENVIRON = "HTTP_" + BINDING_HEADER.upper().replace("-", "_")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

access_log = logging.getLogger("vigil.access")
C = TypeVar("C", bound=Context)


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error response is shaped."""

    type = fields.String(metadata={"description": "URI identifying the problem type"})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    instance = fields.String()
    request_id = fields.String()
    errors = fields.Dict(
        keys=fields.String(),
        values=fields.List(fields.String()),
        metadata={"description": "Field name → messages, for validation problems"},
    )


class VigilApi(Api):  # type: ignore[misc]  # flask-smorest ships no type information
    """flask-smorest with problem+json errors, documented bearer security, and the operation fields
    Vigil's own decorators declare (:mod:`vigil_shared.apidoc`)."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = "DEFAULT_ERROR"

    def __init__(self, app: Flask | None = None, *, spec_kwargs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        self.operation_docs = OperationDocPlugin()
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [
            *spec_kwargs.get("extra_plugins", ()),
            self.operation_docs,
            PreconditionPlugin(),
        ]
        super().__init__(app, spec_kwargs=spec_kwargs, **kwargs)

    def init_app(self, app: Flask, *, spec_kwargs: dict[str, Any] | None = None) -> None:
        self.operation_docs.app = app
        super().init_app(app, spec_kwargs=spec_kwargs)

    def _register_error_handlers(self) -> None:
        register_error_handlers(self._app)

    def register_blueprint(self, blp: Blueprint, **options: Any) -> None:
        """Bounds every Integer argument field first, so parsing and the OpenAPI document both apply it."""
        for schema in guards.argument_schemas(blp):
            guards.bound_integers(schema)
        super().register_blueprint(blp, **options)


def incoming_request_id() -> str:
    return request_id_of(request.environ.get(_REQUEST_ID_ENVIRON, ""))


def request_id_of(sent: str) -> str:
    """The request id a call carries: the one it was sent with when well formed, else a new one."""
    return sent if _REQUEST_ID_RE.match(sent) else new_request_id()


def new_request_id() -> str:
    """``uuid.uuid4().hex`` (16 random bytes, the version and variant bits set) without building the UUID
    object, whose checks cost as much as the rest of a forwarded read's request id handling."""
    value = int.from_bytes(os.urandom(16), "big")
    value = (value & ~(0xC000 << 48) | 0x8000 << 48) & ~(0xF000 << 64) | 4 << 76
    return f"{value:032x}"


def log_request(
    request_id: str | None, method: str, path: str, status: int, started: float | None, user: str | None
) -> None:
    """The access log line of a request (one per request, whichever path answered it)."""
    log_fields(
        access_log,
        "request",
        {
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            "user": user,
        },
    )


def base_app(name: str, settings: Settings) -> Flask:
    """Flask app with request ids, problem+json errors, size limits and one JSON log line per request."""
    configure_logging(settings.log_level, process=name)
    app = Flask(f"vigil_{name}", static_folder=None)
    app.config.update(
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
        JSON_SORT_KEYS=False,
        API_TITLE=f"Vigil {name} service",
        API_VERSION="v1",
        OPENAPI_VERSION="3.1.0",
        OPENAPI_URL_PREFIX="/",
        OPENAPI_JSON_PATH="openapi.json",
    )
    app.extensions["vigil_settings"] = settings
    # Every input from outside is untrusted, and bad input gets problem+json: Werkzeug's own answer to
    # a doubled slash (``/api/v1/customers//1``) was a 308 HTML page whose ``Location`` named the host
    # and port the request reached, so a service's answer through the gateway told a caller where the
    # services listen. Without merging, such a path matches no route: a 404 problem like any other.
    # (Set before any route is added: each rule takes the map's setting when it is bound.)
    app.url_map.merge_slashes = False

    @app.before_request
    def _start() -> None:
        g.started = time.perf_counter()
        g.request_id = incoming_request_id()

    guards.install(app)  # right after the request id: before authentication, parsing or any view

    @app.after_request
    def _finish(response: Response) -> Response:
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        response.headers["X-Content-Type-Options"] = "nosniff"
        log_request(
            g.get("request_id"),
            request.method,
            request.path,
            response.status_code,
            g.get("started"),
            getattr(g.get("identity"), "username", None),
        )
        return response

    return app


def enforce_json_bodies(app: Flask, exempt_endpoints: frozenset[str] = frozenset()) -> None:
    """415 for a request body that is not JSON, before any parsing (uploads are exempted by endpoint)."""

    @app.before_request
    def _require_json_body() -> None:
        if request.method not in BODY_METHODS:
            return None
        sends_body = request.content_length or request.headers.get("Transfer-Encoding")
        exempt = request.endpoint in exempt_endpoints
        if sends_body and not exempt and not request.is_json:
            raise Problem(415, "Send the request body as application/json.")
        return None


def create_service_app(
    name: str,
    settings: Settings,
    db: Database,
    blueprints: Iterable[Blueprint],
    ready_checks: dict[str, Callable[[], None]],
    multipart_endpoints: frozenset[str] = frozenset(),
) -> Flask:
    app = base_app(name, settings)
    app.extensions["vigil_check_forms"] = True  # services parse uploads; the gateway passes them on untouched
    app.teardown_appcontext(db.close_request_session)

    @app.before_request
    def _require_identity() -> None:
        if request.path in PUBLIC_PATHS:
            return None
        environ = request.environ  # read there: werkzeug's header view costs a lookup per name
        token = environ.get(_IDENTITY_ENVIRON)
        if not token:
            raise Problem(401, "This service is reached through the Vigil gateway only.", type=UNAUTHENTICATED)
        binding = environ.get(_BINDING_ENVIRON)
        try:
            g.identity = verify_identity(
                token, settings.internal_secret, request_id=g.request_id if binding else None, binding=binding
            )
        except InvalidIdentity:
            raise Problem(401, "The gateway identity token is invalid or expired.", type=UNAUTHENTICATED) from None
        return None

    enforce_json_bodies(app, exempt_endpoints=multipart_endpoints)

    @app.after_request
    def _report_confidential_reads(response: Response) -> Response:
        reads = g.get("confidential_reads")
        if reads:
            response.headers[CONFIDENTIAL_READS_HEADER] = json.dumps(reads, separators=(",", ":"))
        return response

    api = VigilApi(
        app,
        spec_kwargs={
            "info": {"description": f"The {name} service of Vigil. Reached through the gateway only."},
        },
    )
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.options["security"] = [{"bearerAuth": []}]
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    add_health_routes(app, ready_checks)
    app.extensions["vigil_api"] = api
    return app


def note_confidential_read(target_type: str, target_id: object, fields: list[str]) -> None:
    """Records that this response shows ``fields`` of a record unmasked; the gateway audits it."""
    if fields:
        g.setdefault("confidential_reads", []).append(
            {"target_type": target_type, "target_id": str(target_id), "fields": sorted(fields)}
        )


def request_context(context_type: type[C] = Context, *, version: str | None = None) -> C:  # type: ignore[assignment]
    """The command context of this request: its session and outbox, the caller, the field cipher.

    ``version`` is the one the caller read (:func:`if_match`), given by the views that honour it
    (those documenting a 412). A service passes its own
    :class:`~vigil_shared.commands.Context` subclass when its commands need more (how its history
    names the actor, say).
    """
    runtime = current_runtime()
    request_id = g.get("request_id")
    return context_type(
        session=runtime.db.request_session(),
        identity=current_identity(),
        outbox=runtime.outbox(request_id),
        cipher=runtime.cipher,
        request_id=request_id,
        if_match=version,
    )


def command_context(version: str | None = None) -> Context:
    """The command context of a view (:func:`request_context`); ``version`` is the caller's ``If-Match``
    (:func:`if_match`) for a view that honours it."""
    return request_context(version=version)


def if_match() -> str | None:
    """The request's ``If-Match``: read only by views that document it (a 412 answer), for their command."""
    return request.headers.get("If-Match")


def record_rule(load: Callable[..., Any]) -> Callable[[View], View]:
    """Loads the URL's record and checks the caller's rights on it before the body is even parsed.

    ``load(**view_kwargs)`` answers 404 (also for a record outside the caller's rights:
    :meth:`~vigil_shared.commands.Context.require_on`) by raising; what it returns is the view's
    :func:`loaded`. Place it right under ``@requires`` (and ``@idempotent``), above the
    flask-smorest decorators: a caller who holds the permission only in another location gets the 404
    of an unknown id for this record whatever they send, never a 422 about their body.
    """

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            g.loaded = load(**kwargs)
            return view(*args, **kwargs)

        return cast(View, wrapper)  # functools.wraps carries what the decorators below documented

    return decorator


def loader_rule(
    load: Callable[..., Any], id_name: str, context: Callable[[], Any] = command_context
) -> Callable[[str], Callable[[View], View]]:
    """A record rule factory for the records ``load(context(), <the URL's id_name>, permission)`` finds.

    ``rule = loader_rule(commands.load_invoice, "invoice_id")`` then ``rule("billing.manage")`` is
    the :func:`record_rule` of a view of ``/invoices/<int:invoice_id>`` (and what
    :func:`vigil_shared.endpoints.endpoint` calls with the operation's permission).
    """

    def rule(permission: str) -> Callable[[View], View]:
        return record_rule(lambda **view_args: load(context(), view_args[id_name], permission))

    return rule


def loaded() -> Any:
    """What the view's :func:`record_rule` loaded."""
    return g.loaded
