import pytest

from vigil_credit.app import program
from vigil_credit.models import Base

pytest_plugins = ["vigil_shared.pytest_plugin"]


@pytest.fixture(scope="session")
def service_program():
    return program


@pytest.fixture(scope="session")
def service_metadata():
    return Base.metadata
