import pytest
from sqlalchemy import Integer, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from vigil_shared.db import Database, ServiceTables, service_metadata
from vigil_shared.messaging.outbox import messaging_models
from vigil_shared.operations import operation_models
from vigil_shared.testing import TestDatabases, choose_backend, clean_tables


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


messaging = messaging_models(Base)
operations = operation_models(Base)


class Note(Base):
    """A stand-in domain table: handlers write here inside the inbox transaction."""

    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    text: Mapped[str] = mapped_column(String(200))


def pytest_report_header(config):
    return f"vigil shared: tests on {choose_backend()}"


@pytest.fixture(scope="session")
def database(tmp_path_factory):
    databases = TestDatabases(choose_backend(), str(tmp_path_factory.mktemp("db")))
    db = Database(databases.url_for("shared"))
    Base.metadata.create_all(db.engine)
    yield db
    db.dispose()
    databases.drop_all()


@pytest.fixture
def db(database):
    with clean_tables(database, Base.metadata):
        yield database
