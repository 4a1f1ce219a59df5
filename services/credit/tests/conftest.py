import pytest

from vigil_credit.app import program

pytest_plugins = ["vigil_shared.pytest_plugin"]


@pytest.fixture(scope="session")
def service_program():
    return program
