"""Users, roles, locations, sessions, API keys, login throttling and the audit log."""

import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import ADMIN_PASSWORD, PASSWORD, TEST_PASSWORDS, bearer, make_user, sign_in
from sqlalchemy import select, text
from sqlalchemy.exc import DBAPIError

from vigil_gateway.identity_cache import bump
from vigil_gateway.models import AuditEntry, LoginFailures
from vigil_gateway.settings import LoginPolicy
from vigil_gateway.users import ensure_admin
from vigil_shared.permissions import CATALOG


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.headers["Content-Type"] == "application/problem+json"
    return response.json


@pytest.fixture
def setup(client, auth):
    """Two office locations and a role, created through the API."""
    north = client.post("/api/v1/locations", json={"name": "North"}, headers=auth).json
    south = client.post("/api/v1/locations", json={"name": "South"}, headers=auth).json
    clerk = client.post(
        "/api/v1/roles", json={"name": "Clerk", "permissions": ["customers.view", "customers.modify"]}, headers=auth
    ).json
    return {"north": north["id"], "south": south["id"], "clerk": clerk["id"]}


def audit_actions(db, **filters):
    with db.new_session() as session:
        statement = select(AuditEntry).order_by(AuditEntry.id)
        for key, value in filters.items():
            statement = statement.where(getattr(AuditEntry, key) == value)
        return session.scalars(statement).all()


def test_permission_catalog(client, auth):
    catalog = client.get("/api/v1/permissions", headers=auth).json
    assert {p["name"] for p in catalog} == {p.name for p in CATALOG}
    assert {p["scope"] for p in catalog} == {"location", "global"}


def test_me_shows_effective_rights_per_location(client, auth, setup):
    make_user(client, auth, "carol", grants=[{"role_id": setup["clerk"], "location_id": setup["north"]}])
    me = client.get("/api/v1/me", headers=bearer(sign_in(client, "carol", PASSWORD))).json
    assert me["username"] == "carol" and me["permissions"] == [] and me["is_admin"] is False
    assert me["locations"] == [
        {"location_id": setup["north"], "name": "North", "permissions": ["customers.modify", "customers.view"]}
    ]


def test_a_grant_without_location_holds_everywhere(client, auth, setup):
    make_user(client, auth, "dave", grants=[{"role_id": setup["clerk"], "location_id": None}])
    me = client.get("/api/v1/me", headers=bearer(sign_in(client, "dave", PASSWORD))).json
    assert {loc["location_id"] for loc in me["locations"]} >= {setup["north"], setup["south"]}


def test_user_admin_rules(client, auth, setup):
    manager_role = client.post("/api/v1/roles", headers=auth, json={"name": "HR", "permissions": ["users.manage"]}).json
    make_user(client, auth, "hr-anna", grants=[{"role_id": manager_role["id"], "location_id": None}])
    hr = bearer(sign_in(client, "hr-anna", PASSWORD))
    assert (
        client.post("/api/v1/users", headers=hr, json={"username": "xavier1", "password": PASSWORD}).status_code == 201
    )
    escalation = problem(
        client.post("/api/v1/users", headers=hr, json={"username": "xavier2", "password": PASSWORD, "is_admin": True}),
        403,
    )
    assert "is_admin" in escalation["errors"]
    granting = problem(
        client.post(
            "/api/v1/users",
            headers=hr,
            json={"username": "xavier3", "password": PASSWORD, "grants": [{"role_id": setup["clerk"]}]},
        ),
        403,
    )
    assert "grants" in granting["errors"]
    assert problem(client.get("/api/v1/roles", headers=hr), 403)["permission"] == "roles.manage"


def test_user_validation_and_mass_assignment(client, auth):
    errors = problem(client.post("/api/v1/users", headers=auth, json={"username": "a b", "password": "short"}), 422)[
        "errors"
    ]
    assert set(errors) == {"username", "password"}
    make_user(client, auth, "erin")
    assert problem(client.post("/api/v1/users", headers=auth, json={"username": "ERIN", "password": PASSWORD}), 409)
    user_id = client.get("/api/v1/users?q=erin", headers=auth).json["items"][0]["id"]
    for field, value in (
        ("id", 99),
        ("created_at", "2020-01-01T00:00:00Z"),
        ("password_hash", "x"),
        ("failed_logins", 0),
    ):
        assert (
            field in problem(client.patch(f"/api/v1/users/{user_id}", headers=auth, json={field: value}), 422)["errors"]
        )
    assert problem(
        client.post(
            "/api/v1/users",
            headers=auth,
            json={"username": "frank", "password": PASSWORD, "grants": [{"role_id": 999}]},
        ),
        422,
    )["errors"] == {"grants.0.role_id": ["No such role."]}


def test_deactivating_a_user_ends_their_sessions_at_once(client, auth, db):
    user = make_user(client, auth, "gina")
    tokens = bearer(sign_in(client, "gina", PASSWORD))
    assert client.get("/api/v1/me", headers=tokens).status_code == 200
    assert client.patch(f"/api/v1/users/{user['id']}", headers=auth, json={"active": False}).status_code == 200
    problem(client.get("/api/v1/me", headers=tokens), 401)
    problem(client.post("/api/v1/auth/token", json={"username": "gina", "password": PASSWORD}), 401)
    assert audit_actions(db, action="user.deactivate", target_id=str(user["id"]))


def test_the_last_admin_cannot_be_removed(client, auth):
    admin_id = client.get("/api/v1/me", headers=auth).json["id"]
    problem(client.patch(f"/api/v1/users/{admin_id}", headers=auth, json={"active": False}), 409)


def test_refresh_rotates_and_a_replayed_refresh_token_closes_the_session(client, auth, db):
    make_user(client, auth, "hank")
    first = sign_in(client, "hank", PASSWORD)
    second = client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}).json
    assert second["refresh_token"] != first["refresh_token"]
    assert client.get("/api/v1/me", headers=bearer(second)).status_code == 200
    problem(client.post("/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}), 401)
    problem(client.get("/api/v1/me", headers=bearer(second)), 401)
    problem(client.post("/api/v1/auth/refresh", json={"refresh_token": second["refresh_token"]}), 401)
    assert audit_actions(db, action="auth.refresh_reuse")
    problem(client.post("/api/v1/auth/refresh", json={"refresh_token": "vrt_nope.nope"}), 401)


def test_logout_revokes_the_session(client, auth):
    make_user(client, auth, "ivy")
    tokens = sign_in(client, "ivy", PASSWORD)
    other = sign_in(client, "ivy", PASSWORD)
    assert client.post("/api/v1/auth/logout", headers=bearer(tokens)).status_code == 204
    problem(client.get("/api/v1/me", headers=bearer(tokens)), 401)
    problem(client.post("/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}), 401)
    assert client.get("/api/v1/me", headers=bearer(other)).status_code == 200, "other sessions stay open"


def test_password_change_and_reset(client, auth):
    user = make_user(client, auth, "jack")
    here, elsewhere = sign_in(client, "jack", PASSWORD), sign_in(client, "jack", PASSWORD)
    problem(
        client.post(
            "/api/v1/me/password",
            headers=bearer(here),
            json={"current_password": "wrong", "new_password": "another-long-password"},
        ),
        401,
    )
    assert (
        client.post(
            "/api/v1/me/password",
            headers=bearer(here),
            json={"current_password": PASSWORD, "new_password": "another-long-password"},
        ).status_code
        == 204
    )
    assert client.get("/api/v1/me", headers=bearer(here)).status_code == 200
    problem(client.get("/api/v1/me", headers=bearer(elsewhere)), 401)
    assert (
        client.post(
            f"/api/v1/users/{user['id']}/password", headers=auth, json={"password": "reset-by-the-admin"}
        ).status_code
        == 204
    )
    problem(client.get("/api/v1/me", headers=bearer(here)), 401)
    sign_in(client, "jack", "reset-by-the-admin")


def test_guessing_the_current_password_is_throttled_like_a_sign_in(client, auth):
    """``POST /me/password`` checks the current password: with a stolen session (15 minutes, or as long as
    its refresh token lasts) it answered every guess, unthrottled, where sign-in allows 5 a minute. A
    guess found there is the password itself, which outlives the session that was stolen."""
    make_user(client, auth, "kim")
    stolen = bearer(sign_in(client, "kim", PASSWORD))
    guess = {"current_password": "wrong-guess", "new_password": "the-attackers-password"}
    for _ in range(5):
        problem(client.post("/api/v1/me/password", headers=stolen, json=guess), 401)
    throttled = problem(
        client.post("/api/v1/me/password", headers=stolen, json=guess | {"current_password": PASSWORD}), 429
    )
    assert throttled["type"] == "urn:vigil:problem:rate-limited"
    # the guesses count where sign-ins count: the same budget, whichever door they knock on
    problem(client.post("/api/v1/auth/token", json={"username": "kim", "password": PASSWORD}), 429)


def test_failed_logins_are_throttled_per_username(client):
    for _ in range(5):
        problem(client.post("/api/v1/auth/token", json={"username": "admin", "password": "wrong"}), 401)
    throttled = problem(client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD}), 429)
    assert (
        int(client.post("/api/v1/auth/token", json={"username": "admin", "password": "x"}).headers["Retry-After"]) >= 1
    )
    assert throttled["type"] == "urn:vigil:problem:rate-limited"


@pytest.fixture
def strict_client(app_with, db):
    policy = LoginPolicy(
        failures_per_user_per_minute=100, failures_per_address_per_15min=100, lockout_threshold=3, lockout_seconds=600
    )
    app = app_with(login_policy=policy)
    from vigil_gateway.users import ensure_admin

    with db.transaction() as session:
        ensure_admin(session, TEST_PASSWORDS, "admin", ADMIN_PASSWORD)
    return app.test_client()


def test_a_username_without_an_account_is_locked_alike(strict_client, db):
    """Only an existing account was ever locked: after enough failures in a row its "locked" 429 (a
    quarter of an hour) told that the username exists, where another one kept answering 401."""
    answers = {}
    for username in ("admin", "nobody-here"):
        for _ in range(3):
            problem(strict_client.post("/api/v1/auth/token", json={"username": username, "password": "wrong"}), 401)
        locked = strict_client.post("/api/v1/auth/token", json={"username": username, "password": "wrong"})
        body = problem(locked, 429)
        answers[username] = (body["type"], body["title"], body["detail"], int(locked.headers["Retry-After"]) // 10)
    assert answers["admin"] == answers["nobody-here"] and answers["admin"][3] in (59, 60)


def test_repeated_failures_lock_the_account(strict_client, db):
    for _ in range(3):
        problem(strict_client.post("/api/v1/auth/token", json={"username": "admin", "password": "wrong"}), 401)
    locked = strict_client.post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert problem(locked, 429) and 590 <= int(locked.headers["Retry-After"]) <= 600
    assert audit_actions(db, action="auth.lockout")


def test_failed_logins_are_throttled_per_address(app_with, db):
    policy = LoginPolicy(failures_per_user_per_minute=100, failures_per_address_per_15min=4, lockout_threshold=100)
    client = app_with(login_policy=policy).test_client()
    for i in range(4):
        problem(client.post("/api/v1/auth/token", json={"username": f"guess{i}", "password": "x"}), 401)
    problem(client.post("/api/v1/auth/token", json={"username": "someone-else", "password": "x"}), 429)
    other_address = client.post(
        "/api/v1/auth/token",
        json={"username": "someone-else", "password": "x"},
        environ_base={"REMOTE_ADDR": "10.9.8.7"},
    )
    problem(other_address, 401)


def _concurrent_sign_ins(app, db, attempts: int, attempt_of):
    """The statuses of ``attempts`` sign-ins to ``app`` (with the admin), six at a time (the first six
    start together): attempt ``i`` posts ``attempt_of(i) = (body, client address)``."""
    with db.transaction() as session:
        ensure_admin(session, TEST_PASSWORDS, "admin", ADMIN_PASSWORD)
    start = threading.Barrier(6)

    def attempt(i):
        if i < 6:
            start.wait()
        body, address = attempt_of(i)
        response = app.test_client().post("/api/v1/auth/token", json=body, environ_base={"REMOTE_ADDR": address})
        return response.status_code

    with ThreadPoolExecutor(max_workers=6) as pool:
        return list(pool.map(attempt, range(attempts)))


def test_concurrent_failures_from_one_address_are_all_counted(app_with, db):
    """31 wrong passwords, 6 at a time, from one address: the per-address limit (30) engages.

    Counting used to read the row, add one in Python and write it back, so concurrent failures
    overwrote each other's increments on PostgreSQL and the limit never engaged."""
    policy = LoginPolicy(failures_per_user_per_minute=100, failures_per_address_per_15min=30, lockout_threshold=100)
    app = app_with(login_policy=policy)
    statuses = _concurrent_sign_ins(app, db, 31, lambda i: ({"username": f"guess{i}", "password": "wrong"}, "10.1.2.3"))
    assert set(statuses) <= {401, 429} and statuses.count(401) >= 30, statuses
    with db.new_session() as session:
        counted = session.get(LoginFailures, "addr:10.1.2.3").count
    assert counted == statuses.count(401), f"{statuses.count(401)} failures, {counted} counted"
    after = app.test_client().post(
        "/api/v1/auth/token",
        json={"username": "admin", "password": ADMIN_PASSWORD},
        environ_base={"REMOTE_ADDR": "10.1.2.3"},
    )
    assert problem(after, 429)["type"] == "urn:vigil:problem:rate-limited"


def test_concurrent_failures_of_one_account_all_count_toward_its_lockout(app_with, db):
    policy = LoginPolicy(failures_per_user_per_minute=100, failures_per_address_per_15min=100, lockout_threshold=12)
    app = app_with(login_policy=policy)
    statuses = _concurrent_sign_ins(
        app, db, 12, lambda i: ({"username": "admin", "password": f"wrong{i}"}, f"10.2.0.{i}")
    )
    assert statuses.count(401) == 12, statuses
    locked = app.test_client().post("/api/v1/auth/token", json={"username": "admin", "password": ADMIN_PASSWORD})
    problem(locked, 429)


def test_api_keys_carry_a_subset_shown_once_and_revocable(client, auth, setup, db):
    created = client.post(
        "/api/v1/api-keys",
        headers=auth,
        json={"name": "central station", "permissions": ["customers.view"], "location_ids": [setup["north"]]},
    )
    assert created.status_code == 201
    key = created.json["key"]
    assert key.startswith("vgk_") and key not in client.get("/api/v1/api-keys", headers=auth).get_data(as_text=True)
    me = client.get("/api/v1/me", headers={"X-API-Key": key}).json
    assert me["kind"] == "api_key" and me["locations"] == [
        {"location_id": setup["north"], "name": "North", "permissions": ["customers.view"]}
    ]
    assert client.get("/api/v1/me", headers={"Authorization": f"Bearer {key}"}).status_code == 200
    assert client.get(f"/api/v1/api-keys/{created.json['id']}", headers=auth).json["last_used_at"]
    problem(client.get("/api/v1/users", headers={"X-API-Key": key}), 403)
    assert client.delete(f"/api/v1/api-keys/{created.json['id']}", headers=auth).status_code == 204
    problem(client.get("/api/v1/me", headers={"X-API-Key": key}), 401)
    problem(client.get("/api/v1/me", headers={"X-API-Key": key[:-3] + "abc"}), 401)
    assert audit_actions(db, action="api_key.create") and audit_actions(db, action="api_key.revoke")


def test_an_api_key_cannot_carry_more_than_its_creator_holds(client, auth, setup):
    keymaker = client.post(
        "/api/v1/roles", headers=auth, json={"name": "Keymaker", "permissions": ["api_keys.manage", "customers.view"]}
    ).json
    make_user(client, auth, "kim", grants=[{"role_id": keymaker["id"], "location_id": setup["north"]}])
    kim = bearer(sign_in(client, "kim", PASSWORD))
    assert (
        client.post(
            "/api/v1/api-keys",
            headers=kim,
            json={"name": "ok", "permissions": ["customers.view"], "location_ids": [setup["north"]]},
        ).status_code
        == 201
    )
    too_much = problem(
        client.post(
            "/api/v1/api-keys",
            headers=kim,
            json={"name": "no", "permissions": ["customers.delete"], "location_ids": [setup["north"]]},
        ),
        403,
    )
    assert too_much["errors"]["permissions"] == ["Not yours to give: customers.delete"]
    problem(
        client.post(
            "/api/v1/api-keys",
            headers=kim,
            json={"name": "no", "permissions": ["customers.view"], "location_ids": [setup["south"]]},
        ),
        403,
    )
    problem(client.post("/api/v1/api-keys", headers=kim, json={"name": "no", "permissions": ["customers.view"]}), 403)
    assert (
        "permissions"
        in problem(
            client.post("/api/v1/api-keys", headers=auth, json={"name": "x", "permissions": ["customers.fly"]}), 422
        )["errors"]
    )


def test_roles_and_locations(client, auth, setup):
    assert problem(client.post("/api/v1/roles", headers=auth, json={"name": "clerk", "permissions": []}), 409)
    assert problem(client.post("/api/v1/locations", headers=auth, json={"name": "north"}), 409)
    make_user(client, auth, "lee", grants=[{"role_id": setup["clerk"], "location_id": setup["north"]}])
    problem(client.delete(f"/api/v1/roles/{setup['clerk']}", headers=auth), 409)
    lee = bearer(sign_in(client, "lee", PASSWORD))
    assert [loc["id"] for loc in client.get("/api/v1/locations", headers=lee).json["items"]] == [setup["north"]]
    hidden = problem(client.get(f"/api/v1/locations/{setup['south']}", headers=lee), 404)
    unknown = problem(client.get("/api/v1/locations/999999", headers=lee), 404)
    assert {k: hidden[k] for k in ("type", "title", "detail")} == {k: unknown[k] for k in ("type", "title", "detail")}
    problem(client.post("/api/v1/locations", headers=lee, json={"name": "West"}), 403)
    changed = client.patch(f"/api/v1/roles/{setup['clerk']}", headers=auth, json={"permissions": ["customers.view"]})
    assert changed.status_code == 200
    me = client.get("/api/v1/me", headers=lee).json
    assert me["locations"][0]["permissions"] == ["customers.view"], "a role change applies on the next call"


def test_audit_log_is_filterable_and_append_only(client, auth, db):
    problem(client.post("/api/v1/auth/token", json={"username": "admin", "password": "nope"}), 401)
    failures = client.get("/api/v1/audit?action=auth.login&outcome=failure", headers=auth).json
    assert failures["total"] >= 1 and failures["items"][0]["actor_name"] == "admin"
    assert client.get("/api/v1/audit?action=auth.*", headers=auth).json["total"] >= 2
    assert "since" not in client.get("/api/v1/audit?from=2020-01-01T00:00:00Z", headers=auth).json
    with pytest.raises(DBAPIError), db.transaction() as session:
        session.execute(text("UPDATE audit_entries SET outcome = 'success'"))
    with pytest.raises(DBAPIError), db.transaction() as session:
        session.execute(text("DELETE FROM audit_entries"))


def test_confidential_reads_reported_by_a_service_are_audited_and_not_leaked(client, auth, db):
    response = client.get("/api/v1/customers/5?reveal=1", headers=auth)
    assert response.status_code == 200 and "X-Vigil-Confidential-Reads" not in response.headers
    entry = audit_actions(db, action="confidential.read")[-1]
    assert entry.target_id == "5" and entry.details["fields"] == ["ssn"] and entry.actor_name == "admin"


def test_the_epoch_read_survives_a_connection_the_database_dropped(app, client, auth, db):
    """The epoch is read on a pooled DBAPI connection; one the server closed is replaced, once."""
    cache = app.extensions["vigil_gateway_identity_cache"]
    before = cache.epoch()
    with db.transaction() as session:
        bump(session)
    assert cache.epoch() == before + 1
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:  # every idle epoch connection of this database, from another session
            ended = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state = 'idle' AND starts_with(query, 'SELECT epoch FROM auth_state')"
            ).scalar()
        assert ended >= 1
    assert cache.epoch() == before + 1
    assert client.get("/api/v1/me", headers=auth).status_code == 200


AUDIT_ROW = dict(
    occurred_at=None,  # set per test: now
    actor_id="7",
    actor_name="tech",
    actor_kind="user",
    client_ip="203.0.113.7",
    request_id=None,
    action="tech.lookup",
    outcome="success",
    target_type="property",
    target_id="3",
    details={"account_number": "ACC-1 %s '", "status": 200, "nested": {"a": [1, None, "é"]}},
)


@pytest.mark.parametrize("empty", [False, True], ids=["filled", "nulls"])
def test_an_audit_entry_on_the_kept_connection_is_the_row_sqlalchemy_writes(app, db, empty):
    """The audit entry goes in on the DBAPI connection (statement compiled once, values through the
    column types' own processors): the stored row must be the one SQLAlchemy's insert stores."""
    from sqlalchemy import insert

    from vigil_shared.db import utcnow

    cache = app.extensions["vigil_gateway_identity_cache"]
    row = AUDIT_ROW | {"occurred_at": utcnow()}
    if empty:
        row |= {key: None for key in row if key not in ("occurred_at", "action", "outcome")}
    cache.insert(AuditEntry.__table__, row | {"request_id": f"raw-{empty}"})
    with db.engine.begin() as conn:
        conn.execute(insert(AuditEntry), row | {"request_id": f"core-{empty}"})
    with db.engine.connect() as conn:
        stored = {
            r.request_id.split("-")[0]: r._asdict()
            for r in conn.execute(select(AuditEntry.__table__).where(AuditEntry.request_id.like(f"%-{empty}")))
        }
        raw_details, core_details = (
            conn.execute(
                text("SELECT CAST(details AS TEXT) FROM audit_entries WHERE request_id = :id"),
                {"id": f"{kind}-{empty}"},
            ).scalar()
            for kind in ("raw", "core")
        )
    assert set(stored) == {"raw", "core"}
    for entry in stored.values():
        del entry["id"], entry["request_id"]
    assert stored["raw"] == stored["core"] and stored["raw"]["occurred_at"] == row["occurred_at"]
    assert raw_details == core_details  # the same JSON text (a null details is JSON null on both)


def test_an_audit_entry_survives_a_connection_the_database_dropped(app, db):
    cache = app.extensions["vigil_gateway_identity_cache"]
    from vigil_shared.db import utcnow

    cache.insert(AuditEntry.__table__, AUDIT_ROW | {"occurred_at": utcnow(), "request_id": "before-drop"})
    if db.engine.dialect.name == "postgresql":
        with db.engine.connect() as conn:
            ended = conn.exec_driver_sql(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND state = 'idle' AND starts_with(query, 'INSERT INTO audit_entries')"
            ).scalar()
        assert ended >= 1
    cache.insert(AuditEntry.__table__, AUDIT_ROW | {"occurred_at": utcnow(), "request_id": "after-drop"})
    with db.engine.connect() as conn:
        written = conn.execute(
            select(AuditEntry.request_id).where(AuditEntry.request_id.in_(["before-drop", "after-drop"]))
        ).scalars()
        assert sorted(written) == ["after-drop", "before-drop"]


def test_on_sqlite_the_epoch_is_read_again_after_any_commit_and_only_then(app, db, monkeypatch):
    """On SQLite the epoch is not queried while the WAL-index header stands still; a bump committed by
    another process changes the header and applies on the very next call. Elsewhere (PostgreSQL) there
    is no header to watch: every call reads the epoch."""
    cache = app.extensions["vigil_gateway_identity_cache"]
    before = cache.epoch()
    queries = []
    real = cache._on_dbapi
    monkeypatch.setattr(cache, "_on_dbapi", lambda sql, *a, **kw: queries.append(sql) or real(sql, *a, **kw))
    if db.engine.dialect.name != "sqlite":
        assert cache._wal_signal() is None
        assert [cache.epoch() for _ in range(3)] == [before] * 3
        assert len(queries) == 3
        return
    assert cache._wal_signal() is not None, "a file database in WAL mode is watched"
    assert [cache.epoch() for _ in range(3)] == [before] * 3
    assert queries == []
    bumped = subprocess.run(  # another process, SQLite's own client: nothing of this process is told
        [
            sys.executable,
            "-c",
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1], isolation_level=None);"
            " c.execute('UPDATE auth_state SET epoch = epoch + 1 WHERE id = 1'); c.close()",
            db.engine.url.database,
        ],
        check=True,
    )
    assert bumped.returncode == 0
    assert cache.epoch() == before + 1
    assert len(queries) == 1
    from sqlalchemy import insert  # noqa: PLC0415 - as the audit test above

    from vigil_shared.db import utcnow  # noqa: PLC0415

    with db.engine.begin() as conn:  # any commit, even one that leaves the epoch alone, has it read again
        conn.execute(insert(AuditEntry), AUDIT_ROW | {"occurred_at": utcnow()})
    assert cache.epoch() == before + 1
    assert len(queries) == 2
    assert cache.epoch() == before + 1
    assert len(queries) == 2


def test_administrators_deactivating_each_other_at_once_leave_one(client, auth, db):
    """Each change counted the administrators before the other committed, so two at once (each one
    deactivating the other) both went through and left none (PostgreSQL; SQLite's writers take turns)."""
    from vigil_gateway.models import User

    admins = [make_user(client, auth, f"boss{i}", is_admin=True)["id"] for i in range(2)]
    me = client.get("/api/v1/me", headers=auth).json["id"]
    assert client.patch(f"/api/v1/users/{me}", headers=auth, json={"active": False}).status_code == 200
    for _ in range(3):  # a race: a few rounds, the one left bringing the other back after each
        headers = [bearer(sign_in(client, f"boss{i}", PASSWORD)) for i in range(2)]
        barrier, answers = threading.Barrier(2), []

        def deactivate(caller, target, barrier=barrier, answers=answers):
            barrier.wait()
            answers.append(client.patch(f"/api/v1/users/{target}", headers=caller, json={"active": False}).status_code)

        threads = [threading.Thread(target=deactivate, args=(headers[i], admins[1 - i])) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with db.new_session() as session:
            active = session.scalars(select(User.id).where(User.is_admin.is_(True), User.active.is_(True))).all()
        # the loser is refused by the last-administrator rule (409), or, when the winner committed
        # before the loser's call was authenticated, as a deactivated caller (401): one is left either way
        assert len(active) == 1 and sorted(answers) in ([200, 409], [200, 401]), answers
        left = admins.index(active[0])
        back = client.patch(f"/api/v1/users/{admins[1 - left]}", headers=headers[left], json={"active": True})
        assert back.status_code == 200, back.json


def test_ended_sign_in_windows_are_removed_and_running_ones_kept(db):
    """Every username and address tried left a row for ever (each unknown name two)."""
    from datetime import timedelta

    from vigil_gateway.login_guard import prune_ended_windows
    from vigil_gateway.models import LoginFailures
    from vigil_gateway.settings import LoginPolicy
    from vigil_shared.db import utcnow

    now = utcnow()
    ages = {  # key: seconds since its window started
        "user:old": 61,
        "user:new": 30,
        "addr:10.0.0.1": 15 * 60 + 1,
        "addr:10.0.0.2": 14 * 60,
        "ghost:old": 30 * 86400 + 1,
        "ghost:new": 29 * 86400,
        "ghost-lock:old": 601,
        "ghost-lock:new": 599,
    }
    with db.transaction() as session:
        for key, age in ages.items():
            session.add(LoginFailures(scope_key=key, window_start=now - timedelta(seconds=age), count=1))
    with db.transaction() as session:
        prune_ended_windows(session, LoginPolicy(lockout_seconds=600), now)
    with db.new_session() as session:
        kept = sorted(session.scalars(select(LoginFailures.scope_key)).all())
    assert kept == sorted(key for key in ages if key.endswith("new") or key.endswith(".2"))
