"""Migration 0013: the typed usernames kept before it (throttling windows, audit of failed sign-ins) go."""

import pytest
from sqlalchemy import create_engine, text

from vigil_shared import migrations
from vigil_shared.testing import TestDatabases, choose_backend


@pytest.fixture
def fresh_url(tmp_path):
    databases = TestDatabases(choose_backend(), str(tmp_path))
    yield databases.url_for("gateway_login_names")
    databases.drop_all()


def test_plain_names_are_dropped_from_windows_and_unknown_sign_in_audits(fresh_url):
    url = fresh_url
    migrations.upgrade("vigil_gateway", url, "0012")
    engine = create_engine(url)
    now = "2026-03-04 10:00:00+00:00"
    with engine.begin() as conn:
        for key in ("user:hunter2", "ghost:hunter2", "ghost-lock:hunter2", "addr:10.0.0.1"):
            conn.execute(
                text("INSERT INTO login_failures (scope_key, window_start, count) VALUES (:k, :now, 3)"),
                {"k": key, "now": now},
            )
        conn.execute(
            text(
                "INSERT INTO audit_entries (occurred_at, actor_name, action, outcome, target_type, target_id, details)"
                " VALUES (:now, 'hunter2', 'auth.login', 'failure', 'user', NULL, NULL),"
                " (:now, 'hunter2', 'auth.login', 'denied', 'user', NULL, '{\"reason\": \"address\"}'),"
                " (:now, 'admin', 'auth.login', 'failure', 'user', '1', NULL)"
            ),
            {"now": now},
        )
    migrations.upgrade("vigil_gateway", url)
    with engine.connect() as conn:
        keys = conn.execute(text("SELECT scope_key FROM login_failures")).scalars().all()
        rows = conn.execute(text("SELECT actor_name, target_id, details FROM audit_entries ORDER BY id")).all()
    assert keys == ["addr:10.0.0.1"]
    assert "hunter2" not in str(rows)
    assert [(r[0], r[1]) for r in rows] == [(None, None), (None, None), ("admin", "1")]
    assert all("none" in str(r[2]) for r in rows[:2]) and "address" in str(rows[1][2])
    with pytest.raises(Exception, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET outcome = 'success'"))
    engine.dispose()
