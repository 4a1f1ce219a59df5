from datetime import date

import pytest

from vigil_billing import recurring
from vigil_billing.app import program

pytest_plugins = ["vigil_shared.pytest_plugin"]


@pytest.fixture(scope="session")
def service_program():
    return program


@pytest.fixture
def known(known):
    """The plugin's ``known``, of kind ``customer``: ``known(7)``, ``known(8, location_id=2, parent_id=7)``."""

    def add(customer_id: int, location_id: int | None = 1, deleted: bool = False, parent_id: int | None = None):
        known(customer_id, location_id, deleted, kind="customer", parent_id=parent_id)

    return add


@pytest.fixture
def any_start(monkeypatch):
    """Recurring invoices may start on the fixed past dates a test runs the due job on, whatever today is
    (the backdating limit is tested on its own)."""
    monkeypatch.setattr(recurring, "earliest_start", lambda today: date.min)


@pytest.fixture(scope="session")
def sandbox_url(tmp_path_factory):
    """The sandbox processor (its real app) served over HTTP on a free port for the session."""
    import threading

    from werkzeug.serving import make_server

    from vigil_sandbox_processor.app import create_app

    server = make_server(
        "127.0.0.1", 0, create_app(str(tmp_path_factory.mktemp("sandbox") / "p.sqlite")), threaded=True
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    thread.join()
    server.server_close()


@pytest.fixture
def sandbox(sandbox_url):
    """Billing's adapter pointed at the sandbox; ``sandbox.tokenize(number)`` plays the client's part."""
    import requests

    from vigil_billing import processor

    adapter = processor.HttpProcessor(sandbox_url, "sk_test_unit", backoff=0.01)
    processor.use(adapter)

    class Sandbox:
        url = sandbox_url

        @staticmethod
        def tokenize(number="4242424242424242", exp_year=2099, **extra):
            body = {"number": number, "exp_month": 12, "exp_year": exp_year, "holder": "Dana Reyes"} | extra
            with requests.post(f"{sandbox_url}/v1/tokens", json=body, timeout=5) as response:
                assert response.status_code == 201, response.text
                return response.json()["token"]

    yield Sandbox()
    adapter.http.clear()
    processor.use(None)
