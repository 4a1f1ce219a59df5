"""A deleted role's (user's, key's …) id is never handed to another: audit entries and grants name only it."""

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from vigil_shared import migrations
from vigil_shared.db import build_engine
from vigil_shared.testing import TestDatabases, choose_backend


def test_a_new_role_never_gets_the_id_of_a_deleted_one(client, auth):
    first = client.post("/api/v1/roles", json={"name": "Temp one", "permissions": []}, headers=auth).json
    assert client.delete(f"/api/v1/roles/{first['id']}", headers=auth).status_code == 204
    second = client.post("/api/v1/roles", json={"name": "Temp two", "permissions": []}, headers=auth).json
    assert second["id"] > first["id"]
    client.delete(f"/api/v1/roles/{second['id']}", headers=auth)


@pytest.fixture
def old_database(tmp_path):
    databases = TestDatabases(choose_backend(), str(tmp_path))
    url = databases.url_for("gateway_ids_migration")
    migrations.upgrade("vigil_gateway", url, "0004")
    engine = build_engine(url)
    yield url, engine
    engine.dispose()
    databases.drop_all()


def test_the_migration_keeps_rows_grants_audit_triggers_and_every_id_taken(old_database):
    """User 3 was deleted before the upgrade; only the audit log still names it."""
    url, engine = old_database
    now = datetime(2026, 1, 2, tzinfo=UTC)
    with engine.begin() as conn:
        for user_id in (1, 2, 3):
            conn.execute(
                text(
                    "INSERT INTO users (id, username, password_hash, is_admin, active, failed_logins, "
                    "created_at, updated_at) VALUES (:id, :name, 'x', false, true, 0, :now, :now)"
                ),
                {"id": user_id, "name": f"user{user_id}", "now": now},
            )
        conn.execute(
            text(
                "INSERT INTO roles (id, name, permissions, created_at, updated_at) "
                "VALUES (1, 'Clerk', '[]', :now, :now)"
            ),
            {"now": now},
        )
        conn.execute(text("INSERT INTO grants (user_id, role_id) VALUES (2, 1)"))
        conn.execute(
            text(
                "INSERT INTO audit_entries (occurred_at, action, outcome, target_type, target_id) "
                "VALUES (:now, 'user.create', 'success', 'user', '3')"
            ),
            {"now": now},
        )
        conn.execute(text("DELETE FROM users WHERE id = 3"))

    migrations.upgrade("vigil_gateway", url)

    with engine.begin() as conn:
        assert conn.execute(text("SELECT user_id, role_id FROM grants")).all() == [(2, 1)]
        assert conn.execute(text("SELECT count(*) FROM audit_entries")).scalar() == 1
    if engine.dialect.name == "sqlite":  # PostgreSQL: a sequence, which never goes back anyway
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO users (username, password_hash, is_admin, active, failed_logins, "
                    "created_at, updated_at) VALUES ('newcomer', 'x', false, true, 0, :now, :now)"
                ),
                {"now": now},
            )
            assert conn.execute(text("SELECT id FROM users WHERE username = 'newcomer'")).scalar() == 4
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("UPDATE audit_entries SET outcome = 'denied'"))
    with pytest.raises(DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_entries"))
