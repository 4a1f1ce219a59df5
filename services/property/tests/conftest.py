import pytest

from vigil_property.app import program
from vigil_property.models import KnownCustomer
from vigil_shared.testing import add_known_customer

pytest_plugins = ["vigil_shared.pytest_plugin"]


@pytest.fixture(scope="session")
def service_program():
    return program


@pytest.fixture
def known(session, customer_service):
    """Puts customers in the replica: ``known(7)`` (location 1), ``known(8, location_id=2)``; a live one
    also exists in the stand-in customer service, which a create asks to confirm the replica."""

    def add(customer_id: int, location_id: int | None = 1, deleted: bool = False):
        add_known_customer(session, KnownCustomer, customer_service, customer_id, location_id, deleted)

    return add


@pytest.fixture
def site(api, known):
    """A property (account ``S-1``) of customer 7, at location 1."""
    known(7)
    return api.post("/api/v1/customers/7/properties", json={"account_number": "S-1"}).json
