"""A pooled PostgreSQL connection is probed before use only when in doubt, and a dead one is never handed out."""

import time

import pytest
from sqlalchemy import text

from vigil_shared import db


@pytest.fixture
def engine(database):
    if database.engine.dialect.name != "postgresql":
        pytest.skip("the pool's probe is PostgreSQL's (SQLite has no connection to lose)")
    engine = db.build_engine(database.url, pool_size=1)
    yield engine
    engine.dispose()


@pytest.fixture
def probes(engine, monkeypatch):
    sent = []
    ping = engine.dialect.do_ping
    monkeypatch.setattr(engine.dialect, "do_ping", lambda conn: sent.append(1) or ping(conn))
    return sent


def backend_pid(engine):
    with engine.connect() as conn:
        return conn.execute(text("SELECT pg_backend_pid()")).scalar()


def test_a_connection_back_from_recent_use_is_not_probed_and_an_idle_one_is(engine, probes, monkeypatch):
    first = backend_pid(engine)
    assert backend_pid(engine) == backend_pid(engine) == first  # the pool's one connection, reused
    assert probes == []  # used a moment ago and nothing waiting on its socket: no round trip
    monkeypatch.setattr(db, "PROBE_AFTER_IDLE_SECONDS", 0.0)  # idle long enough to be in doubt
    assert backend_pid(engine) == first and len(probes) == 1


def test_a_connection_the_server_ended_while_idle_is_replaced_before_use(engine, database, probes):
    ended = backend_pid(engine)
    with database.engine.connect() as admin:
        assert admin.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": ended}).scalar()
    time.sleep(0.2)  # the server's goodbye reaches the idle socket
    assert db._has_input(engine.pool._pool.queue[0].dbapi_connection)
    assert backend_pid(engine) != ended  # no error: probed, found dead, replaced
    assert len(probes) == 1
