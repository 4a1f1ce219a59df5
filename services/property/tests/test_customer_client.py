"""The call to the customer service, against a small stand-in HTTP server on a free port."""

import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from vigil_property.models import KnownCustomer
from vigil_shared.identity import verify_identity
from vigil_shared.testing import TEST_SECRET, assert_hidden

ANSWERS = {1: 200, 2: 404, 3: 500, 4: 200}
BODIES = {1: {"id": 1, "location_id": 2, "monitoring_company_id": 5}, 4: {"id": 4}}


@pytest.fixture
def customer_service(monkeypatch):
    seen = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server naming
            seen.append((self.path, dict(self.headers)))
            status = ANSWERS[int(self.path.rsplit("/", 1)[-1])]
            payload = json.dumps(BODIES.get(int(self.path.rsplit("/", 1)[-1]), {"status": status})).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    monkeypatch.setenv("VIGIL_CUSTOMER_URL", f"http://127.0.0.1:{server.server_port}/")
    yield seen
    server.shutdown()
    server.server_close()


def test_existing_customer_is_asked_for_with_a_service_identity(api, session, customer_service):
    response = api.post("/api/v1/customers/1/properties", json={}, headers={"X-Request-ID": "req-42"})
    assert response.status_code == 201 and response.json["location_id"] == 2
    known = session.get(KnownCustomer, 1)
    assert known.deleted is False and known.location_id == 2
    assert known.monitoring_company_id == 5  # Monitored By: which central station's messages reach it
    [(path, headers)] = customer_service
    assert path == "/api/v1/customers/1"
    assert headers["X-Request-ID"] == "req-42"
    caller = verify_identity(headers["X-Vigil-Identity"], TEST_SECRET)
    assert caller.kind == "service" and caller.username == "property"
    # the sale section's view shows Monitored By (vigil_property.customer_client), nothing else is kept of it
    assert caller.permissions == {"customers.view", "leads.view", "customers.sale_info.view"}
    assert caller.request_id == "req-42"


def test_a_customer_without_location_is_visible_to_no_user(api, session, customer_service):
    response = api.post("/api/v1/customers/4/properties", json={})
    assert_hidden(response, api.post("/api/v1/customers/2/properties", json={}), 422)  # 2: unknown
    assert session.get(KnownCustomer, 4) is None  # a refused request keeps nothing; the next one asks again


def test_missing_customer_is_422(api, customer_service):
    response = api.post("/api/v1/customers/2/properties", json={})
    assert response.status_code == 422 and response.json["errors"] == {"customer_id": ["No such customer."]}


def test_failing_customer_service_is_503(api, customer_service):
    response = api.post("/api/v1/customers/3/properties", json={})
    assert response.status_code == 503 and response.json["type"] == "urn:vigil:problem:service-unavailable"


def test_unreachable_customer_service_is_503(api, monkeypatch):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    monkeypatch.setenv("VIGIL_CUSTOMER_URL", f"http://127.0.0.1:{closed_port}")
    response = api.post("/api/v1/customers/1/properties", json={})
    assert response.status_code == 503
    assert response.headers["Content-Type"] == "application/problem+json"
