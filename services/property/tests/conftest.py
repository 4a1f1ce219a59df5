import pytest
from sqlalchemy import select

from vigil_property import customer_client
from vigil_property.app import program
from vigil_property.customer_client import CustomerFacts
from vigil_property.models import KnownCustomer, messaging

pytest_plugins = ["vigil_shared.pytest_plugin"]


@pytest.fixture(scope="session")
def service_program():
    return program


class FakeCustomerService:
    """Stands in for ``customer_client.lookup_customer`` and records which ids it was asked about."""

    def __init__(self):
        self.asked: list[int] = []
        self.customers: dict[int, int | None] = {}  # customer id -> location id
        self.failure: Exception | None = None

    def __call__(self, customer_id: int):
        self.asked.append(customer_id)
        if self.failure is not None:
            raise self.failure
        if customer_id not in self.customers:
            return None
        return CustomerFacts(customer_id, self.customers[customer_id])


@pytest.fixture
def customer_service(monkeypatch):
    fake = FakeCustomerService()
    monkeypatch.setattr(customer_client, "lookup_customer", fake)
    return fake


@pytest.fixture
def known(session, customer_service):
    """Puts customers in the replica: ``known(7)`` (location 1), ``known(8, location_id=2)``; a live one
    also exists in the stand-in customer service, which a create asks to confirm the replica."""

    def add(customer_id: int, location_id: int | None = 1, deleted: bool = False):
        session.add(KnownCustomer(customer_id=customer_id, location_id=location_id, deleted=deleted))
        session.commit()
        if not deleted and isinstance(customer_service, FakeCustomerService):
            customer_service.customers.setdefault(customer_id, location_id)

    return add


@pytest.fixture
def outbox(session):
    """The events written so far, as ``(type, data)`` pairs, oldest first."""

    def read(event_type: str | None = None):
        session.expire_all()
        rows = session.scalars(select(messaging.OutboxEvent).order_by(messaging.OutboxEvent.position)).all()
        return [(row.type, row.data) for row in rows if event_type is None or row.type == event_type]

    return read


@pytest.fixture
def site(api, known):
    """A property (account ``S-1``) of customer 7, at location 1."""
    known(7)
    return api.post("/api/v1/customers/7/properties", json={"account_number": "S-1"}).json
