import pytest

from vigil_property.app import program

pytest_plugins = ["vigil_shared.pytest_plugin"]


@pytest.fixture(scope="session")
def service_program():
    return program


@pytest.fixture
def site(api, known):
    """A property (account ``S-1``) of customer 7, at location 1."""
    known(7)
    return api.post("/api/v1/customers/7/properties", json={"account_number": "S-1"}).json
