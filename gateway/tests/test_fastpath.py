"""The WSGI fast path of forwarded reads (``vigil_gateway.fastpath``) answers exactly as Flask does.

Each request is sent twice with the same ``X-Request-ID``: through the gateway as it runs (the fast
path in front of Flask) and to the Flask app alone (``FastPath.flask``). Status line, every header in
order, body, the access log line, what the service received and what was audited must be the same;
and each test states which of the two paths answered the first (``flask_calls``), so a request the
fast path must not answer is seen to fall through.
"""

from __future__ import annotations

import json
import logging
import threading

import pytest
from conftest import ADMIN_PASSWORD, PASSWORD, TEST_PASSWORDS, bearer, make_user, sign_in
from flask import Flask, jsonify, request
from test_forwarding import RawService
from test_identity import audit_actions
from werkzeug.serving import make_server
from werkzeug.test import EnvironBuilder, run_wsgi_app

from vigil_gateway.fastpath import FastPath, status_line, wsgi_headers
from vigil_gateway.users import ensure_admin
from vigil_shared.errors import PROBLEM_JSON


class StubProperty:
    """A property service stand-in answering the cases a read can meet; records each call it receives."""

    def __init__(self) -> None:
        self.received: list[dict] = []
        app = Flask("stub-property")

        @app.route("/api/v1/properties/<int:property_id>", methods=["GET"])
        def read(property_id: int):
            self.received.append(
                {
                    "method": request.method,
                    "path": request.full_path,
                    "headers": sorted((k, v) for k, v in request.headers.items() if k not in ("Host",)),
                }
            )
            problem = {403: "forbidden", 404: "not found", 429: "slow down"}.get(property_id)
            if problem:
                body = {"type": "about:blank", "title": problem, "status": property_id, "detail": problem}
                headers = {"Content-Type": PROBLEM_JSON}
                if property_id == 429:
                    headers["Retry-After"] = "7"
                return json.dumps(body), property_id, headers
            if property_id == 204:
                return "", 204
            if property_id == 301:
                return "", 301, {"Location": "/api/v1/properties/1"}
            etag = f'"{property_id}.3"'
            if request.headers.get("If-None-Match") == etag:
                return "", 304, {"ETag": etag, "Cache-Control": "private, no-cache"}
            headers = {"ETag": etag, "Cache-Control": "private, no-cache", "X-Custom": "kept"}
            if request.args.get("reveal"):
                headers["X-Vigil-Confidential-Reads"] = json.dumps(
                    [{"target_type": "property", "target_id": str(property_id), "fields": ["pin"]}]
                )
            return jsonify(id=property_id, name="Home", query=request.query_string.decode()), 200, headers

        @app.get("/api/v1/properties")
        def listing():
            self.received.append({"method": "GET", "path": request.full_path, "headers": []})
            return jsonify(items=[], page=int(request.args.get("page", 1)))

        self.server = make_server("127.0.0.1", 0, app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def stub():
    service = StubProperty()
    yield service
    service.close()


@pytest.fixture
def gateway(app_with, settings, stub, db):
    """A gateway app whose property service is the stub; counts the requests Flask was handed."""
    app = app_with(service_urls={**settings.service_urls, "property": stub.url})
    fast = app.wsgi_app
    assert isinstance(fast, FastPath)
    flask_app = fast.flask
    calls: list[str] = []

    def counted(environ, start_response):
        calls.append(environ["PATH_INFO"])
        return flask_app(environ, start_response)

    fast.flask = counted
    app.flask_calls = calls  # type: ignore[attr-defined]
    app.flask_only = flask_app  # type: ignore[attr-defined]
    return app


@pytest.fixture
def admin(gateway):
    with gateway.extensions["vigil_gateway_db"].transaction() as session:
        ensure_admin(session, TEST_PASSWORDS, "admin", ADMIN_PASSWORD)
    return bearer(sign_in(gateway.test_client(), "admin", ADMIN_PASSWORD))


def _call(wsgi, method: str, path: str, headers: dict, **options) -> tuple[str, list[tuple[str, str]], bytes]:
    environ = EnvironBuilder(path=path, method=method, headers=headers, **options).get_environ()
    environ["REMOTE_ADDR"] = "10.1.2.3"
    app_iter, status, response_headers = run_wsgi_app(wsgi, environ, buffered=True)
    # the service's own Date is passed on; two calls may straddle a second
    headers = [(name, "<the service's>" if name == "Date" else value) for name, value in response_headers.items()]
    return status, headers, b"".join(app_iter)


def both(app, stub, caplog, method: str, path: str, headers: dict | None = None, **options):
    """The answer of the gateway as it runs and of Flask alone, the service's calls and the access log lines
    of each; asserts they are the same and returns the first answer and whether Flask answered it."""
    headers = {"X-Request-ID": "fast-path-equality-1", **(headers or {})}
    app.flask_calls.clear()
    stub.received.clear()
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="vigil.access"):
        first = _call(app.wsgi_app, method, path, headers, **options)
        via_flask = bool(app.flask_calls)
        received_first = list(stub.received)
        lines_first = [_line(r) for r in caplog.records if r.name == "vigil.access"]
        stub.received.clear()
        caplog.clear()
        second = _call(app.flask_only, method, path, headers, **options)
        lines_second = [_line(r) for r in caplog.records if r.name == "vigil.access"]
    assert first == second
    assert received_first == stub.received, "the service received the same call"
    assert lines_first == lines_second and len(lines_first) == 1, "one access log line, the same"
    return first, via_flask


def _line(record: logging.LogRecord) -> dict:
    fields = ("request_id", "method", "path", "status", "user")
    return {name: getattr(record, name) for name in fields} | {"msg": record.getMessage()}


def _warm(app, headers: dict) -> None:
    """Resolves the caller once (Flask does, and caches the identity the fast path then reuses)."""
    _call(app.wsgi_app, "GET", "/api/v1/properties/1", headers)


def test_a_read_is_answered_below_flask_exactly_as_flask_answers_it(gateway, stub, caplog, admin):
    _warm(gateway, admin)
    (status, headers, body), via_flask = both(gateway, stub, caplog, "GET", "/api/v1/properties/5", admin)
    assert not via_flask, "the fast path answered it"
    assert status == "200 OK" and json.loads(body) == {"id": 5, "name": "Home", "query": ""}
    names = [name for name, _ in headers]
    assert ("ETag", '"5.3"') in headers and ("X-Custom", "kept") in headers
    assert ("X-Request-ID", "fast-path-equality-1") in headers and ("X-Content-Type-Options", "nosniff") in headers
    assert "Content-Length" in names and "Connection" not in names and "Server" in names
    call = stub.received[0]
    assert call["method"] == "GET" and call["path"] == "/api/v1/properties/5?"
    sent = dict(call["headers"])
    assert sent["X-Request-Id"] == "fast-path-equality-1" and sent["X-Forwarded-For"] == "10.1.2.3"
    assert "Authorization" not in sent and sent["X-Vigil-Identity"] and sent["X-Vigil-Identity-Binding"]


@pytest.mark.parametrize(
    ("path", "headers", "status"),
    [
        ("/api/v1/properties/403", {}, "403 FORBIDDEN"),
        ("/api/v1/properties/404", {}, "404 NOT FOUND"),
        ("/api/v1/properties/429", {}, "429 TOO MANY REQUESTS"),
        ("/api/v1/properties/204", {}, "204 NO CONTENT"),
        ("/api/v1/properties/301", {}, "301 MOVED PERMANENTLY"),
        ("/api/v1/properties/7", {"If-None-Match": '"7.3"'}, "304 NOT MODIFIED"),
        ("/api/v1/properties/7", {"If-None-Match": '"7.2"', "Accept": "application/json"}, "200 OK"),
        # beyond the id range: forwarded, the service judges it (the stub has no bound, a service answers 404)
        ("/api/v1/properties/99999999999", {}, "200 OK"),
        ("/api/v1/properties/8?a=1&b=%C3%A9+x&c", {}, "200 OK"),
        ("/api/v1/properties/a%2Fb%20c", {}, "404 NOT FOUND"),
        ("/api/v1/properties?page=2", {}, "200 OK"),
    ],
)
def test_what_the_service_answers_is_passed_on_alike(gateway, stub, caplog, admin, path, headers, status):
    _warm(gateway, admin)
    (answer, answer_headers, body), via_flask = both(gateway, stub, caplog, "GET", path, admin | headers)
    assert not via_flask and answer == status
    if answer.startswith("429"):
        assert ("Retry-After", "7") in answer_headers


def test_head_is_answered_below_flask_alike(gateway, stub, caplog, admin):
    _warm(gateway, admin)
    (status, headers, body), via_flask = both(gateway, stub, caplog, "HEAD", "/api/v1/properties/5", admin)
    assert not via_flask and status == "200 OK" and body == b"" and stub.received[0]["method"] == "HEAD"


@pytest.mark.parametrize(
    ("method", "path", "headers", "options", "status"),
    [
        ("GET", "/api/v1/properties/5", {}, {}, "401 UNAUTHORIZED"),  # no credentials
        ("GET", "/api/v1/properties/5", {"Authorization": "Bearer nope"}, {}, "401 UNAUTHORIZED"),
        ("GET", "/api/v1/properties/5", {"Authorization": "Basic eDp5"}, {}, "401 UNAUTHORIZED"),
        ("GET", "/api/v1/properties/5", {"X-API-Key": "vgk_nope"}, {}, "401 UNAUTHORIZED"),
        ("GET", "/api/v1/properties/5%00", "admin", {}, "404 NOT FOUND"),  # NUL in the path
        ("GET", "/api/v1/properties/5?q=a%00b", "admin", {}, "422 UNPROCESSABLE ENTITY"),  # NUL in the query
        ("GET", "/api/v1/properties/5?q=a%7F", "admin", {}, "422 UNPROCESSABLE ENTITY"),
        ("GET", "/api/v1/properties/5", {"X-Note": "a\x01b"}, {}, "422 UNPROCESSABLE ENTITY"),  # control in a header
        ("GET", "/api/v1/users/99999999999", "admin", {}, "404 NOT FOUND"),  # an id beyond the gateway's range
        ("GET", "/api/v1/users", "admin", {}, "200 OK"),  # the gateway's own route
        ("GET", "/api/v1/customers/1/summary", "admin", {}, None),  # an aggregate (its services are stubs)
        ("GET", "/api/v1/nothing/here", "admin", {}, "404 NOT FOUND"),  # no service owns it
        ("GET", "/api/v1//properties/5", "admin", {}, "404 NOT FOUND"),  # a doubled slash: no route, no redirect
        ("GET", "/api/v1/openapi.json", {}, {}, None),  # public
        ("GET", "/api/v1/properties/5", "admin", {"data": b"{}", "content_type": "application/json"}, "200 OK"),
        ("OPTIONS", "/api/v1/properties/5", "admin", {}, None),
        ("POST", "/api/v1/properties/5", "admin", {"json": {"a": 1}}, None),
        ("DELETE", "/api/v1/properties/5", "admin", {}, None),
    ],
)
def test_what_the_fast_path_does_not_answer_falls_through_to_flask(
    gateway, stub, caplog, admin, method, path, headers, options, status
):
    _warm(gateway, admin)
    if headers == "admin":
        headers = admin
    elif "X-Note" in headers:
        headers = admin | headers
    (answer, answer_headers, body), via_flask = both(gateway, stub, caplog, method, path, headers, **options)
    assert via_flask, "Flask answered it"
    if status is not None:
        assert answer == status
    if ("Content-Type", PROBLEM_JSON) in answer_headers:  # the gateway's own problem, not the stub's
        assert json.loads(body)["request_id"] == "fast-path-equality-1"


def test_a_caller_is_resolved_by_flask_first_then_answered_below_it(gateway, stub, caplog):
    client = gateway.test_client()
    with gateway.extensions["vigil_gateway_db"].transaction() as session:
        ensure_admin(session, TEST_PASSWORDS, "admin", ADMIN_PASSWORD)
    headers = bearer(sign_in(client, "admin", ADMIN_PASSWORD))
    _, via_flask = both(gateway, stub, caplog, "GET", "/api/v1/properties/5", headers)
    assert via_flask, "not cached yet: Flask resolved the caller"
    _, via_flask = both(gateway, stub, caplog, "GET", "/api/v1/properties/5", headers)
    assert not via_flask


def test_a_revoked_session_and_a_revoked_key_are_refused_on_the_next_read(gateway, stub, caplog, admin):
    client = gateway.test_client()
    make_user(client, admin, "ivy")
    tokens = sign_in(client, "ivy", PASSWORD)
    _warm(gateway, bearer(tokens))
    _, via_flask = both(gateway, stub, caplog, "GET", "/api/v1/properties/5", bearer(tokens))
    assert not via_flask
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    (status, _, _), via_flask = both(gateway, stub, caplog, "GET", "/api/v1/properties/5", bearer(tokens))
    assert status == "401 UNAUTHORIZED" and via_flask

    created = client.post(
        "/api/v1/api-keys", headers=admin, json={"name": "station", "permissions": ["customers.view"]}
    )
    assert created.status_code == 201, created.json
    key = {"X-API-Key": created.json["key"]}
    _warm(gateway, key)
    (status, _, _), via_flask = both(gateway, stub, caplog, "GET", "/api/v1/properties/5", key)
    assert status == "200 OK" and not via_flask
    (status, _, _), via_flask = both(
        gateway, stub, caplog, "GET", "/api/v1/properties/5", {"Authorization": f"Bearer {created.json['key']}"}
    )
    assert status == "200 OK" and not via_flask, "an API key sent as the bearer credential"
    assert client.delete(f"/api/v1/api-keys/{created.json['id']}", headers=admin).status_code == 204
    (status, _, _), via_flask = both(gateway, stub, caplog, "GET", "/api/v1/properties/5", key)
    assert status == "401 UNAUTHORIZED" and via_flask


def test_a_request_id_is_made_when_none_or_a_bad_one_is_sent(gateway, stub, admin):
    _warm(gateway, admin)
    for sent in ({}, {"X-Request-ID": "bad id with spaces"}):
        gateway.flask_calls.clear()
        status, headers, body = _call(gateway.wsgi_app, "GET", "/api/v1/properties/5", admin | sent)
        assert status == "200 OK" and not gateway.flask_calls
        request_id = dict(headers)["X-Request-ID"]
        assert len(request_id) == 32 and int(request_id, 16) >= 0
        assert dict(stub.received[-1]["headers"])["X-Request-Id"] == request_id


def test_confidential_reads_are_audited_by_the_fast_path_as_by_flask(gateway, stub, caplog, admin, db):
    _warm(gateway, admin)
    (status, headers, _), via_flask = both(gateway, stub, caplog, "GET", "/api/v1/properties/5?reveal=1", admin)
    assert status == "200 OK" and not via_flask
    assert "X-Vigil-Confidential-Reads" not in dict(headers)
    fast, slow = audit_actions(db, action="confidential.read")[-2:]
    for entry in (fast, slow):
        assert entry.target_id == "5" and entry.details == {"fields": ["pin"], "path": "/api/v1/properties/5"}
        assert entry.actor_name == "admin" and entry.request_id == "fast-path-equality-1"
        assert entry.client_ip == "10.1.2.3"


def test_a_service_that_cannot_be_reached_is_called_once_and_answered_by_flask(app_with, settings, caplog, db):
    """The fast path's failed read (sent, retried once on a fresh connection) is not sent again by Flask."""
    dropped = RawService(drop=True)
    try:
        app = app_with(service_urls={**settings.service_urls, "property": f"http://127.0.0.1:{dropped.port}"})
        with app.extensions["vigil_gateway_db"].transaction() as session:
            ensure_admin(session, TEST_PASSWORDS, "admin", ADMIN_PASSWORD)
        headers = bearer(sign_in(app.test_client(), "admin", ADMIN_PASSWORD)) | {"X-Request-ID": "down-1"}
        _call(app.wsgi_app, "GET", "/api/v1/properties/1", headers)  # resolves the caller (Flask)
        sent = len(dropped.requests)
        fast = _call(app.wsgi_app, "GET", "/api/v1/properties/1", headers)
        assert len(dropped.requests) - sent == 2, "sent and retried once, by the fast path only"
        sent = len(dropped.requests)
        slow = _call(app.wsgi_app.flask, "GET", "/api/v1/properties/1", headers)
        assert len(dropped.requests) - sent == 2
        assert fast == slow and fast[0] == "503 SERVICE UNAVAILABLE" and ("Retry-After", "5") in fast[1]
    finally:
        dropped.close()


@pytest.mark.parametrize(
    ("status", "passed", "plain"),
    [
        (200, [("Content-Type", "application/json"), ("ETag", '"1.1"')], True),
        (
            201,
            [("x-content-type-options", "nosniff"), ("Content-Type", "text/csv"), ("X-Content-Type-Options", "x")],
            True,
        ),
        (299, [("Content-Type", "application/json")], True),  # a status werkzeug has no phrase for
        (422, [("Content-Type", PROBLEM_JSON), ("Retry-After", "3"), ("Vary", "Accept"), ("Vary", "Origin")], True),
        (200, [("ETag", '"1.1"')], False),  # no Content-Type: werkzeug adds its default
        (201, [("Content-Type", "application/json"), ("Location", "/api/v1/properties/é")], False),
        (200, [("Content-Type", "application/json"), ("Content-Location", "/a")], False),
        (200, [("Content-Type", "application/json"), ("X-Vigil-Confidential-Reads", "[]")], False),
        (200, [("Content-Type", "application/json"), ("X-Folded", "a\r\n b")], False),
        (204, [("Content-Type", "application/json")], False),
        (304, [("Content-Type", "application/json"), ("ETag", '"1.1"')], False),
    ],
)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_a_plain_answer_is_what_flasks_response_sends(app, status, passed, plain, method):
    """``wsgi_headers``/``status_line`` against werkzeug's response with the gateway's hooks applied."""
    data = b"" if method == "HEAD" else b'{"id": 1}'
    headers = wsgi_headers(status, passed, data, "rid-1")
    assert (headers is not None) == plain
    if headers is None:
        return
    response = app.response_class(data, status=status, headers=passed)
    response.headers["X-Request-ID"] = "rid-1"
    response.headers["X-Content-Type-Options"] = "nosniff"
    app_iter, expected_status, expected_headers = response.get_wsgi_response({"REQUEST_METHOD": method})
    assert (status_line(status), headers) == (expected_status, expected_headers)
    assert b"".join(app_iter) == data
