"""App factory of the gateway: authentication (:mod:`.authn`), its own API, the aggregates, the merged
OpenAPI document and the proxy to the services. Its command line is :mod:`.cli`."""

from __future__ import annotations

from flask import Flask, g, jsonify, request
from werkzeug.middleware.proxy_fix import ProxyFix

from vigil_shared.config import SERVICES
from vigil_shared.db import POOL_SIZE, Database
from vigil_shared.idempotency import register_idempotency
from vigil_shared.identity import IDENTITY_HEADER, service_identity, sign_identity
from vigil_shared.web import REQUEST_ID_HEADER, VigilApi, add_health_routes, base_app, enforce_json_bodies

from . import audit, integrations
from .aggregates import BLUEPRINTS as AGGREGATE_BLUEPRINTS
from .api import BLUEPRINTS as API_BLUEPRINTS
from .authn import API_KEY_HEADER, install_authentication
from .fastpath import FastPath
from .identity_cache import IdentityCache
from .models import IdempotencyRecord
from .openapi import MergedSpec, docs_blueprint, fetch_service_document
from .passwords import Passwords
from .proxy import UpstreamPool, forward, unrouted
from .routing import service_for
from .settings import GatewaySettings

PACKAGE = "vigil_gateway"


def create_app(settings: GatewaySettings | None = None) -> Flask:
    settings = settings or GatewaySettings.from_env()
    base = settings.base
    db = Database(base.database_url, pool_size=max(base.web_threads, POOL_SIZE))
    app = base_app("gateway", base)
    pool = UpstreamPool(settings.upstream_timeout)
    # Forwarded reads are answered below Flask, exactly as Flask answers them (vigil_gateway.fastpath);
    # ProxyFix, when set, wraps both, so each sees the client's address and scheme.
    app.wsgi_app = FastPath(app, app.wsgi_app, settings, pool, "proxy")  # type: ignore[method-assign]
    if settings.trusted_proxy_hops:
        # Flask's documented way to add WSGI middleware; its stubs declare wsgi_app a method
        app.wsgi_app = ProxyFix(  # type: ignore[method-assign]
            app.wsgi_app, x_for=settings.trusted_proxy_hops, x_proto=settings.trusted_proxy_hops
        )
    app.config["OPENAPI_URL_PREFIX"] = None  # the merged document is served below instead
    app.config["API_TITLE"] = "Vigil API"
    app.extensions.update(
        vigil_gateway_settings=settings,
        vigil_gateway_db=db,
        vigil_gateway_pool=pool,
        vigil_gateway_passwords=Passwords(settings.password_hashing),
        vigil_gateway_intake=integrations.Intake(
            db, integrations.DatabaseRateLimiter(db), integrations.property_forward(pool, settings)
        ),
    )
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
    install_authentication(app, settings, db, identity_cache)

    @app.after_request
    def _audit(response):
        return audit.confidential_reads(db, response)

    def fetch_document(service: str) -> dict:
        identity = service_identity("gateway", request_id=g.get("request_id"))
        headers = {
            IDENTITY_HEADER: sign_identity(identity, base.internal_secret, base.identity_token_ttl),
            REQUEST_ID_HEADER: g.get("request_id", ""),
        }
        return fetch_service_document(pool, settings.service_urls[service], headers)

    merged_spec = MergedSpec(lambda: api.spec.to_dict(), fetch_document, list(SERVICES))

    @app.get("/api/v1/openapi.json")
    def openapi_document():
        return jsonify(merged_spec.document())

    app.register_blueprint(docs_blueprint())  # the Swagger UI page and its assets, served offline

    # OPTIONS is forwarded too: the service that owns the path states its real methods in `Allow`.
    @app.route(
        "/api/v1/<path:subpath>",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        provide_automatic_options=False,
    )
    def proxy(subpath):
        service = service_for(request.path)
        if service is None:
            raise unrouted()  # 405 with the real Allow on the gateway's own resources, else 404
        return forward(pool, service, settings.service_urls[service], g.identity_token, g.identity_binding)

    # Ready while its database answers: the broker is the gateway worker's (its own /readyz), and a web
    # process that never publishes does not load Celery or kombu (vigil_shared.service).
    add_health_routes(app, {"database": db.ping})
    return app
