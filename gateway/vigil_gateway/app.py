"""App factory and command line of the gateway (``vigil-gateway migrate|create-admin|web``)."""
from __future__ import annotations

import argparse
import sys

from flask import Flask, Response, g, jsonify, request

from vigil_shared import migrations
from vigil_shared.config import ConfigError, SERVICES, env
from vigil_shared.db import Database
from vigil_shared.errors import Problem, UNAUTHENTICATED, not_found
from vigil_shared.identity import IDENTITY_HEADER, Identity, service_identity, sign_identity
from vigil_shared.logs import configure_logging
from vigil_shared.messaging.celery_app import ping_broker
from vigil_shared.runtime import run_gunicorn
from vigil_shared.web import REQUEST_ID_HEADER, VigilApi, add_health_routes, base_app, enforce_json_bodies

from .api.auth import blp as auth_blp
from .models import User
from .openapi import DOCS_HTML, MergedSpec, fetch_service_document
from .proxy import UpstreamPool, forward
from .routing import service_for
from .settings import GatewaySettings
from .tokens import InvalidToken, verify_access_token
from .users import ensure_admin, permissions_of

PUBLIC_API_PATHS = frozenset({"/api/v1/auth/token", "/api/v1/openapi.json", "/api/v1/docs"})
PACKAGE = "vigil_gateway"


def _authenticate(settings: GatewaySettings, db: Database) -> Identity:
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise Problem(401, "Send `Authorization: Bearer <token>`; get a token from POST /api/v1/auth/token.",
                      type=UNAUTHENTICATED)
    try:
        claims = verify_access_token(token.strip(), settings.secret_key)
    except InvalidToken:
        raise Problem(401, "The access token is invalid or expired.", type=UNAUTHENTICATED) from None
    user = db.request_session().get(User, int(claims["sub"]))
    if user is None or not user.active:
        raise Problem(401, "The account behind this token is disabled.", type=UNAUTHENTICATED)
    return Identity(subject=str(user.id), username=user.username, kind="user",
                    permissions=permissions_of(user), request_id=g.request_id)


def create_app(settings: GatewaySettings | None = None) -> Flask:
    settings = settings or GatewaySettings.from_env()
    base = settings.base
    db = Database(base.database_url)
    app = base_app("gateway", base)
    app.config["OPENAPI_URL_PREFIX"] = None  # the merged document is served below instead
    app.config["API_TITLE"] = "Vigil API"
    app.extensions.update(vigil_gateway_settings=settings, vigil_gateway_db=db)
    app.teardown_appcontext(db.close_request_session)
    pool = UpstreamPool(settings.upstream_timeout)

    api = VigilApi(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.options["security"] = [{"bearerAuth": []}]
    api.register_blueprint(auth_blp)

    enforce_json_bodies(app, exempt_endpoints=frozenset({"proxy"}))  # services judge their own bodies

    @app.before_request
    def _authenticate_api_calls():
        if request.path.startswith("/api/") and request.path not in PUBLIC_API_PATHS:
            g.identity = _authenticate(settings, db)

    def fetch_document(service: str) -> dict:
        identity = service_identity("gateway", request_id=g.get("request_id"))
        headers = {IDENTITY_HEADER: sign_identity(identity, base.internal_secret, base.identity_token_ttl),
                   REQUEST_ID_HEADER: g.get("request_id", "")}
        return fetch_service_document(pool, settings.service_urls[service], headers)

    merged_spec = MergedSpec(lambda: api.spec.to_dict(), fetch_document, list(SERVICES))

    @app.get("/api/v1/openapi.json")
    def openapi_document():
        return jsonify(merged_spec.document())

    @app.get("/api/v1/docs")
    def openapi_docs():
        return Response(DOCS_HTML, mimetype="text/html")

    @app.route("/api/v1/<path:subpath>", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    def proxy(subpath):
        service = service_for(request.path)
        if service is None:
            raise not_found("resource")
        return forward(pool, service, settings.service_urls[service], g.identity, base.internal_secret,
                       base.identity_token_ttl)

    add_health_routes(app, {"database": db.ping, "broker": lambda: ping_broker(base)})
    return app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="vigil-gateway", description="Vigil gateway")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("migrate", help="apply database migrations")
    admin = commands.add_parser("create-admin", help="create the first admin (VIGIL_ADMIN_USERNAME/PASSWORD)")
    admin.add_argument("--reset", action="store_true", help="set a new password on an existing admin")
    commands.add_parser("web", help="serve the public API with gunicorn")
    args = parser.parse_args(argv)
    try:
        settings = GatewaySettings.from_env()
    except ConfigError as exc:
        print(f"vigil-gateway: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.base.log_level, process=f"gateway-{args.command}")
    if args.command == "migrate":
        migrations.upgrade(PACKAGE, settings.base.database_url)
    elif args.command == "create-admin":
        db = Database(settings.base.database_url)
        with db.transaction() as session:
            setup = ensure_admin(session, env("VIGIL_ADMIN_USERNAME", "admin"), env("VIGIL_ADMIN_PASSWORD"),
                                 reset=args.reset)
        if setup.password and not env("VIGIL_ADMIN_PASSWORD"):
            print(f"Admin user '{setup.username}' password (shown once): {setup.password}")
        elif setup.created or setup.password:
            print(f"Admin user '{setup.username}' {'created' if setup.created else 'password reset'}.")
        else:
            print(f"Admin user '{setup.username}' already exists; password unchanged "
                  "(vigil-gateway create-admin --reset sets a new one).")
    elif args.command == "web":
        run_gunicorn(lambda: create_app(settings), settings.base)
    return 0
