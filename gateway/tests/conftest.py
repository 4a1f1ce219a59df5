import dataclasses
import json
import threading

import pytest
from flask import Flask, jsonify, request
from webhook_receiver import LOCAL, Reader, Receiver
from werkzeug.serving import make_server

from vigil_gateway.app import create_app
from vigil_gateway.models import Base
from vigil_gateway.passwords import FAST_FOR_TESTS, Passwords
from vigil_gateway.settings import GatewaySettings
from vigil_gateway.users import ensure_admin
from vigil_gateway.worker import WebhookRuntime
from vigil_shared import migrations
from vigil_shared.config import Settings
from vigil_shared.db import Database
from vigil_shared.identity import BINDING_HEADER, IDENTITY_HEADER, verify_identity
from vigil_shared.testing import TEST_SECRET, TestDatabases, choose_backend, clean_tables

SECRET_KEY = "gateway-test-secret-key-0123456789abcdef"
ADMIN_PASSWORD = "correct horse battery staple"
# Unit tests hash with the cheapest Argon2id parameters; test_passwords.py checks the production ones.
TEST_PASSWORDS = Passwords(FAST_FOR_TESTS)


def pytest_report_header(config):
    return f"vigil gateway: unit tests on {choose_backend()}"


def _stub_service_app() -> Flask:
    """A stand-in upstream that echoes what the gateway forwarded (the e2e suite uses the real services)."""
    stub = Flask("stub")

    @stub.route("/api/v1/customers", methods=["GET", "POST"])
    @stub.route("/api/v1/customers/<path:rest>", methods=["GET", "POST", "PATCH", "DELETE"])
    def echo(rest=None):
        binding = request.headers.get(BINDING_HEADER)  # verified as a service does (vigil_shared.web)
        identity = verify_identity(
            request.headers[IDENTITY_HEADER],
            TEST_SECRET,
            request_id=request.headers.get("X-Request-ID") if binding else None,
            binding=binding,
        )
        if request.args.get("reveal"):
            return (
                jsonify(ssn="123-45-6789"),
                200,
                {
                    "X-Vigil-Confidential-Reads": json.dumps(
                        [{"target_type": "customer", "target_id": "5", "fields": ["ssn"]}]
                    )
                },
            )
        if request.args.get("fail") == "conflict":
            return (
                json.dumps(
                    {"type": "urn:vigil:problem:conflict", "title": "Conflict", "status": 409, "detail": "taken"}
                ),
                409,
                {"Content-Type": "application/problem+json"},
            )
        return (
            jsonify(
                method=request.method,
                path=request.path,
                query=request.query_string.decode(),
                body=request.get_data(as_text=True),
                user=identity.username,
                permissions=sorted(identity.permissions),
                locations={str(k): sorted(v) for k, v in identity.locations.items()},
                authorization=request.headers.get("Authorization"),
                request_id=request.headers.get("X-Request-ID"),
                identity_request_id=identity.request_id,
                identity_token=request.headers[IDENTITY_HEADER],
                if_match=request.headers.get("If-Match"),
            ),
            200,
            {"ETag": '"1.1"', "Location": "/api/v1/customers/1"},
        )

    @stub.get("/openapi.json")
    def spec():
        verify_identity(request.headers[IDENTITY_HEADER], TEST_SECRET)
        return jsonify(
            openapi="3.1.0",
            info={"title": "stub", "version": "v1"},
            tags=[{"name": "customers"}],
            paths={"/api/v1/customers": {"get": {"responses": {"200": {"description": "ok"}}}}},
            components={"schemas": {"Customer": {"type": "object"}}},
        )

    return stub


@pytest.fixture(scope="session")
def upstream():
    server = make_server("127.0.0.1", 0, _stub_service_app(), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def gateway_db_url(tmp_path_factory):
    databases = TestDatabases(choose_backend(), str(tmp_path_factory.mktemp("db")))
    url = databases.url_for("gateway")
    migrations.upgrade("vigil_gateway", url)
    yield url
    databases.drop_all()


@pytest.fixture(scope="session")
def settings(gateway_db_url, upstream, tmp_path_factory):
    base = Settings.from_env(
        "gateway",
        database_url=gateway_db_url,
        internal_secret=TEST_SECRET,
        broker_url="memory://",
        log_level="WARNING",
        broker_dir=tmp_path_factory.mktemp("broker"),
    )
    return GatewaySettings.from_env(
        base=base,
        secret_key=SECRET_KEY,
        upstream_timeout=2.0,
        password_hashing=FAST_FOR_TESTS,
        service_urls={
            "customer": upstream,
            "property": "http://127.0.0.1:9",
            "billing": "http://127.0.0.1:9",
            "credit": "http://127.0.0.1:9",
        },
    )


@pytest.fixture(scope="session")
def app(settings):
    app = create_app(settings)
    yield app
    close_connections(app)


@pytest.fixture
def app_with(settings):
    """Builds apps on ``settings`` with some ``changes``; their connections close after the test."""
    apps = []

    def build(**changes):
        apps.append(create_app(dataclasses.replace(settings, **changes)))
        return apps[-1]

    yield build
    for app in apps:
        close_connections(app)


def close_connections(app) -> None:
    """An app's engines keep pooled connections until disposed; a test run leaves none open."""
    app.extensions["vigil_gateway_db"].dispose()
    app.extensions["vigil_gateway_identity_cache"].dispose()


@pytest.fixture
def db(gateway_db_url):
    database = Database(gateway_db_url)
    with clean_tables(database, Base.metadata, keep=frozenset({"audit_entries", "auth_state"})):
        yield database
    database.dispose()


@pytest.fixture
def client(app, db):
    with db.transaction() as session:
        ensure_admin(session, TEST_PASSWORDS, "admin", ADMIN_PASSWORD)
    return app.test_client()


@pytest.fixture
def token(client):
    response = client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert response.status_code == 200, response.json
    return response.json["access_token"]


@pytest.fixture
def auth(token):
    return {"Authorization": f"Bearer {token}"}


def sign_in(client, username: str, password: str) -> dict:
    response = client.post("/api/v1/auth/token", json={"username": username, "password": password})
    assert response.status_code == 200, response.json
    return response.json


def bearer(tokens: dict) -> dict:
    return {"Authorization": f"Bearer {tokens['access_token']}"}


PASSWORD = "a-long-enough-password"  # of the users the tests make


def make_user(client, auth, username, grants=(), **fields):
    """A user made through the API (as ``auth``) with :data:`PASSWORD` and these role grants."""
    response = client.post(
        "/api/v1/users",
        headers=auth,
        json={"username": username, "password": PASSWORD, "grants": list(grants)} | fields,
    )
    assert response.status_code == 201, response.json
    return response.json


@pytest.fixture
def receiver():
    running = Receiver()
    yield running
    running.server.shutdown()
    running.server.server_close()


@pytest.fixture
def local_app(app):
    app.extensions["vigil_gateway_webhooks"] = LOCAL
    yield app
    app.extensions.pop("vigil_gateway_webhooks", None)


@pytest.fixture
def runtime(settings, db):
    """The webhook worker's runtime, its deliveries' (id, attempt) pairs collected in ``sent`` as they are made."""
    sent: list[tuple[int, int]] = []
    hooks = WebhookRuntime(
        settings=settings, hooks=LOCAL, db=db, celery=None, cipher=settings.webhook_cipher(), reader=Reader()
    )  # type: ignore[arg-type]
    hooks.enqueue = lambda delivery_id, token: sent.append((delivery_id, token))  # type: ignore[method-assign]
    hooks.enqueue_many = lambda pairs: sent.extend(pairs)  # type: ignore[method-assign]
    hooks.sent = sent  # type: ignore[attr-defined]
    yield hooks
    if hooks._senders is not None:
        hooks._senders.shutdown(wait=True)
