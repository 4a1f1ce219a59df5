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
import re
import time
import uuid
from copy import deepcopy
from functools import wraps
from typing import Callable, Iterable

from flask import Flask, g, jsonify, request
from flask_smorest import Api, Blueprint
from marshmallow import Schema, fields

from .config import Settings
from .db import Database
from . import guards
from .errors import FORBIDDEN, Problem, UNAUTHENTICATED, register_error_handlers
from .http import PreconditionPlugin
from .identity import IDENTITY_HEADER, Identity, InvalidIdentity, verify_identity
from .logs import configure_logging
from .permissions import AUTHENTICATED, scope_of

REQUEST_ID_HEADER = "X-Request-ID"
CONFIDENTIAL_READS_HEADER = "X-Vigil-Confidential-Reads"  # service → gateway only, recorded in the audit log
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})

access_log = logging.getLogger("vigil.access")


class ProblemSchema(Schema):
    """RFC 9457 problem details, as every error response is shaped."""

    type = fields.String(metadata={"description": "URI identifying the problem type"})
    title = fields.String()
    status = fields.Integer()
    detail = fields.String()
    instance = fields.String()
    request_id = fields.String()
    errors = fields.Dict(keys=fields.String(), values=fields.List(fields.String()),
                         metadata={"description": "Field name → messages, for validation problems"})


class VigilApi(Api):
    """flask-smorest with problem+json errors and documented bearer security."""

    ERROR_SCHEMA = ProblemSchema
    DEFAULT_ERROR_RESPONSE_NAME = "DEFAULT_ERROR"

    def __init__(self, app=None, *, spec_kwargs=None, **kwargs):
        spec_kwargs = dict(spec_kwargs or {})
        spec_kwargs["extra_plugins"] = [*spec_kwargs.get("extra_plugins", ()), PreconditionPlugin()]
        super().__init__(app, spec_kwargs=spec_kwargs, **kwargs)

    def _register_error_handlers(self):
        register_error_handlers(self._app)

    def register_blueprint(self, blp, **options):
        """Bounds every Integer argument field first, so parsing and the OpenAPI document both apply it."""
        for schema in guards.argument_schemas(blp):
            guards.bound_integers(schema)
        super().register_blueprint(blp, **options)


def incoming_request_id() -> str:
    rid = request.headers.get(REQUEST_ID_HEADER, "")
    return rid if _REQUEST_ID_RE.match(rid) else uuid.uuid4().hex


def current_identity() -> Identity:
    identity = g.get("identity")
    if identity is None:
        raise Problem(401, "Authentication required.", type=UNAUTHENTICATED)
    return identity


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

    @app.before_request
    def _start():
        g.started = time.perf_counter()
        g.request_id = incoming_request_id()

    guards.install(app)  # right after the request id: before authentication, parsing or any view

    @app.after_request
    def _finish(response):
        response.headers[REQUEST_ID_HEADER] = g.get("request_id", "")
        response.headers["X-Content-Type-Options"] = "nosniff"
        started = g.get("started")
        access_log.info("request", extra={
            "request_id": g.get("request_id"), "method": request.method, "path": request.path,
            "status": response.status_code,
            "duration_ms": round((time.perf_counter() - started) * 1000, 2) if started else None,
            "user": getattr(g.get("identity"), "username", None),
        })
        return response

    return app


def enforce_json_bodies(app: Flask, exempt_endpoints: frozenset[str] = frozenset()) -> None:
    """415 for a request body that is not JSON, before any parsing (uploads are exempted by endpoint)."""

    @app.before_request
    def _require_json_body():
        if request.method in BODY_METHODS and (request.content_length or request.headers.get("Transfer-Encoding")):
            if request.endpoint not in exempt_endpoints and not request.is_json:
                raise Problem(415, "Send the request body as application/json.")
        return None


WEB_OPTIONAL_CHECKS = frozenset({"broker"})


def add_health_routes(app: Flask, checks: dict[str, Callable[[], None]],
                      optional: frozenset[str] = WEB_OPTIONAL_CHECKS) -> None:
    """``/healthz``: the process answers. ``/readyz``: it can serve requests (503 otherwise).

    A web process serves requests as long as its database answers: writes go to the outbox, which
    the relay publishes once the broker is back. So a failing ``optional`` check (the broker)
    leaves it ready and is reported in the body as ``degraded``; a load balancer keeps the API up.
    Workers and relays (``runtime.serve_health``) still need every check, the broker included.
    """

    @app.get("/healthz")
    def healthz():
        return jsonify(status="ok", process=app.name)

    @app.get("/readyz")
    def readyz():
        report, ready = run_checks(checks, optional)
        degraded = any(entry["status"] == "degraded" for entry in report.values())
        response = jsonify(status=("degraded" if degraded else "ready") if ready else "unavailable", checks=report)
        response.status_code = 200 if ready else 503
        return response


def run_checks(checks: dict[str, Callable[[], None]], optional: frozenset[str] = frozenset()) -> tuple[dict, bool]:
    """Runs each check; ready unless a check not in ``optional`` fails (those report ``degraded``)."""
    report, ready = {}, True
    for check_name, check in checks.items():
        try:
            check()
            report[check_name] = {"status": "ok"}
        except Exception as exc:  # noqa: BLE001 - readiness reports any failure, by name only
            if check_name in optional:
                report[check_name] = {"status": "degraded", "error": type(exc).__name__}
            else:
                ready = False
                report[check_name] = {"status": "unavailable", "error": type(exc).__name__}
    return report, ready


def create_service_app(name: str, settings: Settings, db: Database, blueprints: Iterable[Blueprint],
                       ready_checks: dict[str, Callable[[], None]],
                       multipart_endpoints: frozenset[str] = frozenset()) -> Flask:
    app = base_app(name, settings)
    app.extensions["vigil_check_forms"] = True  # services parse uploads; the gateway passes them on untouched
    app.teardown_appcontext(db.close_request_session)

    @app.before_request
    def _require_identity():
        if request.path in PUBLIC_PATHS:
            return None
        token = request.headers.get(IDENTITY_HEADER)
        if not token:
            raise Problem(401, "This service is reached through the Vigil gateway only.", type=UNAUTHENTICATED)
        try:
            g.identity = verify_identity(token, settings.internal_secret)
        except InvalidIdentity:
            raise Problem(401, "The gateway identity token is invalid or expired.", type=UNAUTHENTICATED) from None
        return None

    enforce_json_bodies(app, exempt_endpoints=multipart_endpoints)

    @app.after_request
    def _report_confidential_reads(response):
        reads = g.get("confidential_reads")
        if reads:
            response.headers[CONFIDENTIAL_READS_HEADER] = json.dumps(reads, separators=(",", ":"))
        return response

    api = VigilApi(app, spec_kwargs={
        "info": {"description": f"The {name} service of Vigil. Reached through the gateway only."},
    })
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.options["security"] = [{"bearerAuth": []}]
    for blueprint in blueprints:
        api.register_blueprint(blueprint)
    add_health_routes(app, ready_checks)
    app.extensions["vigil_api"] = api
    return app


ANYWHERE = object()  # "at some location": distinct from None, which is a record whose location is unknown


def require(permission: str, location_id=ANYWHERE) -> Identity:
    """403 unless the caller holds ``permission`` at ``location_id`` (or at some location when omitted).

    A ``None`` location (a record not yet placed) is refused for location permissions, never read as
    "anywhere".
    """
    identity = current_identity()
    allowed = identity.can_anywhere(permission) if location_id is ANYWHERE else identity.can(permission, location_id)
    if not allowed:
        raise forbidden(permission)
    return identity


def forbidden(permission: str) -> Problem:
    return Problem(403, f"You need the '{permission}' permission for this.", type=FORBIDDEN, permission=permission)


def requires(permission: str):
    """Refuses, before any parsing, callers who hold ``permission`` nowhere, and documents the rule.

    The operation's OpenAPI entry gets ``x-vigil-permission`` and ``x-vigil-scope``; the
    route × role × location test reads them, so an operation without this decorator fails it.
    Location checks on the record itself stay with the view (``require(permission, location_id)``).
    """
    scope = "none" if permission == AUTHENTICATED else scope_of(permission)

    def decorator(view):
        @wraps(view)
        def wrapper(*args, **kwargs):
            if permission == AUTHENTICATED:
                current_identity()
            else:
                require(permission)
            return view(*args, **kwargs)

        wrapper._apidoc = deepcopy(getattr(view, "_apidoc", {}))
        wrapper._apidoc.setdefault("manual_doc", {}).update({"x-vigil-permission": permission, "x-vigil-scope": scope})
        return wrapper

    return decorator


def request_outbox():
    """The current service's outbox, stamped with this request's id."""
    from .runtime import current_runtime

    return current_runtime().outbox(g.get("request_id"))


def request_session():
    from .runtime import current_runtime

    return current_runtime().db.request_session()


def note_confidential_read(target_type: str, target_id, fields: list[str]) -> None:
    """Records that this response shows ``fields`` of a record unmasked; the gateway audits it."""
    if fields:
        g.setdefault("confidential_reads", []).append(
            {"target_type": target_type, "target_id": str(target_id), "fields": sorted(fields)})
