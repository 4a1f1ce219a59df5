"""App factory and command line of the gateway (``vigil-gateway migrate|create-admin|web``)."""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from datetime import timedelta

from flask import Flask, g, jsonify, request
from sqlalchemy import update
from werkzeug.middleware.proxy_fix import ProxyFix

from vigil_shared import migrations
from vigil_shared.config import ConfigError, SERVICES, env
from vigil_shared.db import Database, utcnow
from vigil_shared.errors import Problem, UNAUTHENTICATED
from vigil_shared.idempotency import register_idempotency
from vigil_shared.identity import IDENTITY_HEADER, service_identity, sign_identity
from vigil_shared.logs import configure_logging
from vigil_shared.messaging.celery_app import ping_broker
from vigil_shared.runtime import run_gunicorn
from vigil_shared.web import (CONFIDENTIAL_READS_HEADER, REQUEST_ID_HEADER, VigilApi, add_health_routes, base_app,
                              enforce_json_bodies)

from . import audit
from .access import api_key_identity, key_lineage, user_identity
from .aggregates import BLUEPRINTS as AGGREGATE_BLUEPRINTS
from .api import BLUEPRINTS as API_BLUEPRINTS
from .identity_cache import Entry, IdentityCache
from .models import ApiKey, IdempotencyRecord, Session as SignInSession, User
from .openapi import PUBLIC_DOCS_PATHS, MergedSpec, docs_blueprint, fetch_service_document
from .proxy import UpstreamPool, forward, unrouted
from .routing import service_for
from .settings import GatewaySettings
from .tokens import API_KEY_PREFIX, InvalidToken, find_api_key, verify_access_token
from .users import ensure_admin

PUBLIC_API_PATHS = frozenset({"/api/v1/auth/token", "/api/v1/auth/refresh", "/api/v1/openapi.json"}) | PUBLIC_DOCS_PATHS
PACKAGE = "vigil_gateway"
API_KEY_HEADER = "X-API-Key"
KEY_USE_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most once a minute per key


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, detail, type=UNAUTHENTICATED)


def _authenticate(settings: GatewaySettings, db: Database, cache: IdentityCache) -> Entry:
    """Bearer access token (a user's session) or API key → the identity passed on to services.

    Resolved identities are cached while ``auth_state.epoch`` is unchanged, so a call costs one
    small query; any revocation or rights change bumps the epoch and applies on the next call.
    """
    header = request.headers.get("Authorization", "")
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    api_key = request.headers.get(API_KEY_HEADER) or (credential if credential.startswith(API_KEY_PREFIX) else None)
    epoch = cache.epoch()
    address = request.remote_addr
    if api_key:
        cache_key = ("key", api_key, address)
        entry = cache.get(cache_key, epoch)
        if entry is None or (entry.expires_at and entry.expires_at < utcnow()):
            session = db.request_session()
            try:
                key = find_api_key(session, api_key)
            except InvalidToken:
                raise _unauthenticated("The API key is invalid, expired or revoked.") from None
            identity = api_key_identity(session, key, None, address)
            if identity is None:
                raise _unauthenticated("The API key's creator is no longer active, or the key it was made with "
                                       "was revoked or expired; the key no longer works.")
            entry = cache.put(cache_key, Entry(epoch, identity, None, None, key_id=key.id,
                                               key_creator_id=key.created_by, expires_at=key_lineage(session, key)[1]))
        _note_key_use(db, entry)
        return entry
    if scheme.lower() != "bearer" or not credential:
        raise _unauthenticated("Send `Authorization: Bearer <token>`; get a token from POST /api/v1/auth/token.")
    try:
        claims = verify_access_token(credential, settings.secret_key)
    except InvalidToken:
        raise _unauthenticated("The access token is invalid or expired.") from None
    cache_key = ("session", claims["sid"], address)
    entry = cache.get(cache_key, epoch)
    if entry is None:
        session = db.request_session()
        signed_in = session.get(SignInSession, claims["sid"])
        if signed_in is None or signed_in.revoked_at is not None:
            raise _unauthenticated("This session has ended; sign in again.")
        user = session.get(User, int(claims["sub"]))
        if user is None or not user.active or signed_in.user_id != user.id:
            raise _unauthenticated("The account behind this token is disabled.")
        entry = cache.put(cache_key, Entry(epoch, user_identity(session, user, None, address), user.id, signed_in.id))
    return entry


def _note_key_use(db: Database, entry: Entry) -> None:
    """Records an API key's last use, at most once a minute."""
    now = utcnow()
    if entry.last_used_written is None or now - entry.last_used_written > KEY_USE_RESOLUTION:
        with db.transaction() as session:
            session.execute(update(ApiKey).where(ApiKey.id == entry.key_id).values(last_used_at=now))
        entry.last_used_written = now


def _audit_confidential_reads(db: Database, response):
    """Services name the confidential values they showed unmasked; each such response is audited."""
    reads = response.headers.pop(CONFIDENTIAL_READS_HEADER, None)
    if reads:
        try:
            entries = json.loads(reads)
        except ValueError:
            entries = [{"unparsed": reads[:500]}]
        for entry in entries:
            audit.record(db, "confidential.read", target_type=entry.get("target_type"),
                         target_id=entry.get("target_id"), details={"fields": entry.get("fields"),
                                                                     "path": request.path})
    return response


def create_app(settings: GatewaySettings | None = None) -> Flask:
    settings = settings or GatewaySettings.from_env()
    base = settings.base
    db = Database(base.database_url)
    app = base_app("gateway", base)
    if settings.trusted_proxy_hops:
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=settings.trusted_proxy_hops, x_proto=settings.trusted_proxy_hops)
    app.config["OPENAPI_URL_PREFIX"] = None  # the merged document is served below instead
    app.config["API_TITLE"] = "Vigil API"
    pool = UpstreamPool(settings.upstream_timeout)
    app.extensions.update(vigil_gateway_settings=settings, vigil_gateway_db=db, vigil_gateway_pool=pool)
    app.teardown_appcontext(db.close_request_session)
    register_idempotency(app, db, IdempotencyRecord, settings.reply_cipher())

    api = VigilApi(app)
    api.spec.components.security_scheme("bearerAuth", {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"})
    api.spec.components.security_scheme("apiKey", {"type": "apiKey", "in": "header", "name": API_KEY_HEADER})
    api.spec.options["security"] = [{"bearerAuth": []}, {"apiKey": []}]
    for blueprint in [*API_BLUEPRINTS, *AGGREGATE_BLUEPRINTS]:
        api.register_blueprint(blueprint)

    enforce_json_bodies(app, exempt_endpoints=frozenset({"proxy"}))  # services judge their own bodies

    identity_cache = IdentityCache(db)
    app.extensions["vigil_gateway_identity_cache"] = identity_cache

    @app.before_request
    def _authenticate_api_calls():
        if request.path.startswith("/api/") and request.path not in PUBLIC_API_PATHS:
            entry = _authenticate(settings, db, identity_cache)
            g.identity = dataclasses.replace(entry.identity, request_id=g.request_id)
            g.user_id, g.session_id, g.key_creator_id = entry.user_id, entry.session_id, entry.key_creator_id
            g.key_id = entry.key_id
            g.identity_token = identity_cache.signed_token(entry, base.internal_secret, base.identity_token_ttl,
                                                           g.request_id)

    @app.after_request
    def _audit(response):
        return _audit_confidential_reads(db, response)

    def fetch_document(service: str) -> dict:
        identity = service_identity("gateway", request_id=g.get("request_id"))
        headers = {IDENTITY_HEADER: sign_identity(identity, base.internal_secret, base.identity_token_ttl),
                   REQUEST_ID_HEADER: g.get("request_id", "")}
        return fetch_service_document(pool, settings.service_urls[service], headers)

    merged_spec = MergedSpec(lambda: api.spec.to_dict(), fetch_document, list(SERVICES))

    @app.get("/api/v1/openapi.json")
    def openapi_document():
        return jsonify(merged_spec.document())

    app.register_blueprint(docs_blueprint())  # the Swagger UI page and its assets, served offline

    # OPTIONS is forwarded too: the service that owns the path states its real methods in `Allow`.
    @app.route("/api/v1/<path:subpath>", methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
               provide_automatic_options=False)
    def proxy(subpath):
        service = service_for(request.path)
        if service is None:
            raise unrouted()  # 405 with the real Allow on the gateway's own resources, else 404
        return forward(pool, service, settings.service_urls[service], g.identity_token)

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
