import threading

import pytest
from werkzeug.serving import make_server

from vigil_credit import customer_client
from vigil_credit.app import program

pytest_plugins = ["vigil_shared.pytest_plugin"]


@pytest.fixture(scope="session")
def service_program():
    return program


class FakeCustomerService:
    """Stands in for the customer service: customer id -> location, the archived ones, and the subjects of pulls."""

    def __init__(self):
        self.customers: dict[int, int | None] = {}
        self.subjects: dict[int, dict] = {}
        self.down = False
        self.subject_reads: list[int] = []
        self.archived: set[int] = set()

    def facts(self, settings, customer_id, request_id):
        if self.down:
            raise customer_client.CustomerUnavailable()
        if customer_id not in self.customers:
            raise customer_client.CustomerGone()
        return customer_client.CustomerFacts(self.customers[customer_id], customer_id in self.archived)

    def subject(self, customer_id, request_id=None):
        self.subject_reads.append(customer_id)
        if self.down:
            raise customer_client.CustomerUnavailable()
        if customer_id not in self.customers:
            raise customer_client.CustomerGone()
        return self.subjects.get(customer_id, {"first_name": "Dana", "last_name": "Reyes", "ssn": "123-45-0750"})


@pytest.fixture
def customers(monkeypatch):
    fake = FakeCustomerService()
    fake.customers.update({7: 1, 8: 2})
    monkeypatch.setattr(customer_client, "customer_facts", fake.facts)
    return fake


@pytest.fixture(scope="session")
def sandbox_bureau():
    """The sandbox bureau on a real port (a thread of this process): ``(base_url, its state)``."""
    from vigil_sandbox_bureau import app as sandbox

    sandbox.SLOW_SECONDS = 0.5
    sandbox.HANG_SECONDS = 3.0
    state = sandbox.Bureau()
    server = make_server("127.0.0.1", 0, sandbox.create_app(state), threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}", state
    server.shutdown()
    thread.join(5)
