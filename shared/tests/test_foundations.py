import pytest

from vigil_shared import config
from vigil_shared.config import ConfigError, Settings
from vigil_shared.errors import flatten_messages
from vigil_shared.identity import Identity, InvalidIdentity, service_identity, sign_identity, verify_identity

SECRET = "k" * 40


def test_identity_round_trip_and_tampering():
    identity = Identity(
        subject="3",
        username="sam",
        permissions=frozenset({"users.manage"}),
        locations={1: frozenset({"customers.view"}), 7: frozenset({"customers.view", "customers.modify"})},
        request_id="r1",
        client_ip="10.0.0.1",
    )
    token = sign_identity(identity, SECRET)
    assert verify_identity(token, SECRET) == identity
    with pytest.raises(InvalidIdentity):
        verify_identity(token, "another-secret" * 3)
    with pytest.raises(InvalidIdentity):
        verify_identity(token[:-2] + "xx", SECRET)
    expired = sign_identity(identity, SECRET, ttl_seconds=-30)
    with pytest.raises(InvalidIdentity):
        verify_identity(expired, SECRET)
    assert identity.can("customers.view", 1) and not identity.can("customers.modify", 1)
    assert identity.can("customers.modify", 7) and not identity.can("customers.view", 2)
    assert identity.locations_with("customers.view") == {1, 7} and identity.can_anywhere("customers.modify")
    assert identity.has("users.manage") and identity.can("users.manage", None)
    assert not identity.can_anywhere("customers.delete")
    service = service_identity("property", {"customers.view"})
    assert service.can("customers.view", 99) and service.location_filter("customers.view") is None
    assert not service.can("customers.delete", 99)


def test_identity_claims_share_permission_sets_between_locations():
    same = frozenset({"customers.view", "notes.view"})
    identity = Identity(subject="1", username="a", locations={loc: same for loc in range(40)})
    claims = identity.to_claims()
    assert len(claims["sets"]) == 1 and len(claims["locs"]) == 40
    assert Identity.from_claims(claims) == identity


def test_validation_messages_flatten_to_field_names():
    nested = {
        "json": {
            "email": ["Not a valid email address."],
            "address": {"zip": ["Invalid."]},
            "_schema": ["Invalid input type."],
        },
        "query": {"page": ["Too big."]},
    }
    assert flatten_messages(nested) == {
        "email": ["Not a valid email address."],
        "address.zip": ["Invalid."],
        "_schema": ["Invalid input type."],
        "page": ["Too big."],
    }


def test_settings_refuse_to_start_without_the_internal_secret(monkeypatch):
    monkeypatch.delenv("VIGIL_INTERNAL_SECRET", raising=False)
    with pytest.raises(ConfigError):
        Settings.from_env("customer")


def test_production_needs_long_secrets(monkeypatch):
    monkeypatch.setenv("VIGIL_ENV", "production")
    with pytest.raises(ConfigError):
        Settings.from_env("customer", internal_secret="short")


def test_malformed_numbers_are_config_errors(monkeypatch):
    monkeypatch.setenv("VIGIL_CUSTOMER_PORT", "eighty")
    with pytest.raises(ConfigError):
        Settings.from_env("customer", internal_secret=SECRET, encryption_keys=("k",), blind_index_key="b")


def test_defaults_work_on_a_fresh_machine(monkeypatch, tmp_path):
    monkeypatch.setenv("VIGIL_VAR_DIR", str(tmp_path))
    for name in list(config.KNOWN_SETTINGS):
        if name not in ("VIGIL_VAR_DIR",):
            monkeypatch.delenv(name, raising=False)
    settings = Settings.from_env("property", internal_secret=SECRET, encryption_keys=("k",), blind_index_key="b")
    assert settings.database_url == f"sqlite:///{tmp_path / 'property.db'}"
    assert settings.broker_url == f"sqlite:///{tmp_path / 'broker.sqlite'}" and settings.port == 8002
    assert settings.worker_health_port == 8102 and settings.relay_health_port == 8202
    assert settings.queue_name() == "vigil.property"


def test_only_declared_settings_can_be_read():
    with pytest.raises(AssertionError):
        config.env("VIGIL_NOT_A_SETTING")


def test_services_need_encryption_keys(monkeypatch):
    monkeypatch.delenv("VIGIL_CUSTOMER_ENCRYPTION_KEYS", raising=False)
    with pytest.raises(ConfigError):
        Settings.from_env("customer", internal_secret=SECRET)


def test_encryption_round_trip_rotation_and_blind_index():
    from vigil_shared.crypto import DecryptionError, FieldCipher, digits_only, generate_key

    old_key, new_key = generate_key(), generate_key()
    old = FieldCipher([old_key], "index")
    token = old.encrypt("123-45-6789")
    assert "6789" not in token and old.decrypt(token) == "123-45-6789"
    rotated_config = FieldCipher([new_key, old_key], "index")
    assert rotated_config.decrypt(token) == "123-45-6789" and not rotated_config.is_current(token)
    rotated = rotated_config.rotate(token)
    assert rotated_config.is_current(rotated) and FieldCipher([new_key], "index").decrypt(rotated) == "123-45-6789"
    with pytest.raises(DecryptionError):
        FieldCipher([generate_key()], "index").decrypt(token)
    assert old.blind_index("123-45-6789", digits_only) == rotated_config.blind_index("123456789", digits_only)
    assert old.blind_index("123456789", digits_only) != FieldCipher([old_key], "other").blind_index(
        "123456789", digits_only
    )


@pytest.mark.parametrize("key", ["not base64 at all!", "c2hvcnQ=", ""])
def test_a_malformed_encryption_key_is_refused_when_the_cipher_is_built(key):
    """cryptography loads on first use, so the key is checked without it, as Fernet checks it."""
    from cryptography.fernet import Fernet

    from vigil_shared.crypto import FieldCipher, generate_key

    with pytest.raises(ValueError, match="32 url-safe base64-encoded bytes"):
        FieldCipher([generate_key(), key], "index")
    with pytest.raises(ValueError, match="32 url-safe base64-encoded bytes"):
        Fernet(key)  # the same verdict as Fernet's own


def test_workers_and_relays_load_neither_celerys_command_line_nor_pyjwt_and_cryptography():
    """Idle memory (bench/bench_idle_rss.py): Celery's command line (its interactive shell) and PyJWT with
    cryptography's compiled core were about 17 MB of every worker, relay and beat, which use none of them
    until a token is checked or a value encrypted."""
    import subprocess
    import sys

    code = (
        "import sys, vigil_customer.app, vigil_gateway.cli, vigil_gateway.worker; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'jwt', 'cryptography', 'click_repl', 'prompt_toolkit'}"
        " | ({'celery.bin.celery'} & set(sys.modules))))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout


def test_require_refuses_a_record_without_location():
    from flask import Flask, g

    from vigil_shared.errors import Problem
    from vigil_shared.web import require

    with Flask("t").test_request_context():
        g.identity = Identity(subject="1", username="a", locations={1: frozenset({"customers.view"})})
        assert require("customers.view") and require("customers.view", 1)
        with pytest.raises(Problem):
            require("customers.view", None)
        with pytest.raises(Problem):
            require("customers.view", 2)


def test_no_session_waits_for_a_lock_or_holds_one_idle_for_ever(database):
    """A stuck lock holder makes the waiter fail (a lost race, retried) rather than hang with it."""
    from sqlalchemy import text

    from vigil_shared.db import build_engine

    with database.engine.connect() as conn:
        if database.engine.dialect.name == "postgresql":
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "5s"
            assert conn.execute(text("SHOW idle_in_transaction_session_timeout")).scalar() == "1min"
        else:
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() == 10000
    if database.engine.dialect.name == "postgresql":  # migrations may wait for the running system
        migrating = build_engine(database.url, bounded_waits=False)
        with migrating.connect() as conn:
            assert conn.execute(text("SHOW lock_timeout")).scalar() == "0"
        migrating.dispose()


def test_psycopg_converts_a_wide_insert_once_and_as_before():
    from psycopg import _queries
    from psycopg.adapt import Transformer

    from vigil_shared.db import widen_psycopg_query_cache

    widen_psycopg_query_cache()
    assert _queries.MAX_CACHED_STATEMENT_PARAMS >= 128 and _queries.MAX_CACHED_STATEMENT_LENGTH >= 8192
    names = [f"column_{i}" for i in range(100)]  # a customer's INSERT: 100 columns, 4.3 kB
    query = f"INSERT INTO t ({', '.join(names)}) VALUES ({', '.join(f'%({n})s' for n in names)})"
    params = {n: i for i, n in enumerate(names)}
    hits = _queries._query2pg.cache_info().hits
    converted = []
    for _ in range(2):
        pg_query = _queries.PostgresQuery(Transformer())
        pg_query.convert(query, params)
        converted.append((pg_query.query, list(pg_query.params or ())))
    assert _queries._query2pg.cache_info().hits == hits + 1  # the second one was not parsed again
    assert converted[0] == converted[1]
    assert converted[0][0] == _queries._query2pg_nocache(query.encode(), "utf-8")[0]


@pytest.mark.parametrize("moment", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_a_moment_utc_cannot_hold_is_a_422_not_a_500(moment):
    """Such a moment parsed, then failed where it was turned into UTC: as it was stored or compared (500)."""
    from datetime import UTC, datetime

    from marshmallow import Schema, ValidationError

    from vigil_shared.fields import Timestamp

    class Args(Schema):
        at = Timestamp()

    with pytest.raises(ValidationError) as refused:
        Args().load({"at": moment})
    assert "outside years 1 to 9999" in refused.value.messages["at"][0]
    assert Args().load({"at": "2026-11-22T09:03:00-05:00"})["at"] == datetime(2026, 11, 22, 14, 3, tzinfo=UTC)
    assert Args().load({"at": "2026-11-22T14:03:00"})["at"].tzinfo is UTC  # offset-less: UTC


def test_a_row_read_for_update_cannot_change_until_the_commit_on_every_backend(db):
    """``SELECT … FOR UPDATE`` then a write from what was read (a default method chosen, a counter
    moved on): on PostgreSQL the row lock makes such writes take turns. SQLite has no row locks and
    drops the clause, and its driver begins a transaction only at the first write, so each of these
    read the same value and all but one update was lost."""
    import threading

    from conftest import Note
    from sqlalchemy import select

    with db.transaction() as session:
        session.add(Note(id=1, text="0"))
    start, errors = threading.Barrier(4), []

    def add_one():
        try:
            start.wait()
            for _ in range(5):
                with db.transaction() as session:
                    note = session.scalar(select(Note).where(Note.id == 1).with_for_update())
                    note.text = str(int(note.text) + 1)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=add_one) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    with db.transaction() as session:
        assert session.get(Note, 1).text == "20"


def test_every_answered_moment_is_the_shared_timestamp_field():
    """A schema that writes a moment with marshmallow's own field writes ``+00:00`` and microseconds where
    every Vigil response writes ``Z`` (the credit service did): responses use ``vigil_shared.fields.Timestamp``."""
    import re
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    own = re.compile(r"fields\.(Aware|Naive)?DateTime\(")
    allowed = {root / "shared/vigil_shared/messaging/contracts.py"}  # reads incoming envelopes; writes its own Z
    packages = [*root.glob("services/*/vigil_*"), root / "gateway/vigil_gateway", root / "shared/vigil_shared"]
    found = [
        f"{path.relative_to(root)}:{n}"
        for package in packages
        for path in package.rglob("*.py")
        if path not in allowed and "migrations" not in path.parts
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if own.search(line)
    ]
    assert found == []


def test_a_pooled_sqlite_connection_keeps_a_bounded_statement_cache(tmp_path):
    """Each connection's prepared statements cost memory in every web process's dozen connections."""
    from sqlalchemy import event, text

    from vigil_shared.db import SQLITE_CACHED_STATEMENTS, build_engine

    engine = build_engine(f"sqlite:///{tmp_path / 'cache.db'}")
    asked: dict = {}
    event.listen(engine, "do_connect", lambda dialect, record, cargs, cparams: asked.update(cparams))
    with engine.connect() as connection:
        assert connection.execute(text("SELECT 1")).scalar_one() == 1
    engine.dispose()
    assert asked["cached_statements"] == SQLITE_CACHED_STATEMENTS == 32
