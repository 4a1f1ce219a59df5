"""Account numbers are one account whatever the letter case and spaces; property ids are never reused."""

import dataclasses
from datetime import UTC, datetime

import pytest
from sqlalchemy import select, text

from vigil_property.models import Property
from vigil_property.tasks import event_consumer
from vigil_shared import migrations
from vigil_shared.db import build_engine
from vigil_shared.messaging.contracts import CustomerDeleted, new_event
from vigil_shared.testing import identity_with


@pytest.fixture
def two_customers(known):
    known(7)
    known(8)


def test_account_numbers_differing_in_case_or_spaces_collide(api, two_customers):
    first = api.post("/api/v1/customers/7/properties", json={"account_number": "acc-1"})
    assert first.status_code == 201 and first.json["account_number"] == "acc-1"
    for same in ("ACC-1", " Acc-1 ", "aCC-1\t"):
        again = api.post("/api/v1/customers/8/properties", json={"account_number": same})
        assert again.status_code == 409, (same, again.json)
        assert again.json["errors"] == {"account_number": ["Already in use."]}
    other = api.post("/api/v1/customers/8/properties", json={"account_number": "ACC-2"}).json
    renamed = api.patch(f"/api/v1/properties/{other['id']}", json={"account_number": "Acc-1"})
    assert renamed.status_code == 409
    own = api.patch(f"/api/v1/properties/{first.json['id']}", json={"account_number": "ACC-1"})
    assert own.status_code == 200 and own.json["account_number"] == "ACC-1"  # its own number, written anew


def test_lookups_ignore_case_and_spaces(api, session, two_customers):
    created = api.post("/api/v1/customers/7/properties", json={"account_number": "Gate-42", "pin": "2468"}).json
    api.post("/api/v1/customers/8/properties", json={})  # no account number: never matched by a lookup
    for typed in ("gate-42", "GATE-42", " Gate-42 "):
        found = api.get("/api/v1/properties", query_string={"account_number": typed}).json
        assert [item["id"] for item in found["items"]] == [created["id"]], typed
    tech = dataclasses.replace(identity_with("tech_portal.use", locations=(1,)), client_ip="203.0.113.9")
    verified = api.as_(tech).post("/api/v1/tech/verify", json={"account_number": " gate-42", "pin": "2468"})
    assert verified.status_code == 200 and verified.json["property"]["id"] == created["id"]
    assert session.scalar(select(Property.account_key).where(Property.id == created["id"])) == "GATE-42"


def test_a_new_property_never_gets_the_id_of_a_deleted_one(api, runtime, session, known):
    known(7)
    known(8)
    kept = api.post("/api/v1/customers/7/properties", json={}).json
    removed = api.post("/api/v1/customers/8/properties", json={"account_number": "OLD-8"}).json
    event_consumer(runtime).consume(new_event(CustomerDeleted(customer_id=8), source="customer").to_message())
    assert api.get(f"/api/v1/properties/{removed['id']}").status_code == 404
    again = api.post("/api/v1/customers/7/properties", json={"account_number": "OLD-8"}).json
    assert again["id"] > removed["id"] > kept["id"]


def _old_database(test_databases, name):
    url = test_databases.url_for(name)
    migrations.upgrade("vigil_property", url, "0005")
    return url, build_engine(url)


def _insert_property(conn, property_id, account_number):
    conn.execute(
        text(
            "INSERT INTO properties (id, customer_id, account_number, monitoring_status, active, "
            "created_at, updated_at, version) VALUES (:id, 7, :number, 'active', true, :now, :now, 1)"
        ),
        {"id": property_id, "number": account_number, "now": datetime(2026, 1, 2, tzinfo=UTC)},
    )


def test_the_migrations_key_account_numbers_and_keep_deleted_property_ids_taken(test_databases):
    url, engine = _old_database(test_databases, "property_accounts_migration")
    try:
        with engine.begin() as conn:
            _insert_property(conn, 1, "acc-1 ")
            _insert_property(conn, 2, None)
            conn.execute(
                text(
                    "INSERT INTO outbox_events (event_id, type, version, occurred_at, data) "
                    "VALUES ('e1', 'property.deleted', 1, :now, :data)"
                ),
                {"now": datetime(2026, 1, 2, tzinfo=UTC), "data": '{"property_id": 9}'},
            )
        migrations.upgrade("vigil_property", url)
        with engine.begin() as conn:
            rows = conn.execute(text("SELECT id, account_number, account_key FROM properties ORDER BY id")).all()
            assert [tuple(row) for row in rows] == [(1, "acc-1", "ACC-1"), (2, None, None)]
            if engine.dialect.name == "sqlite":  # PostgreSQL: a sequence, which never goes back anyway
                _insert_property(conn, None, "fresh")
                assert conn.execute(text("SELECT id FROM properties WHERE account_number = 'fresh'")).scalar() == 10
    finally:
        engine.dispose()


def test_the_migration_refuses_account_numbers_that_would_merge_and_changes_nothing(test_databases):
    url, engine = _old_database(test_databases, "property_accounts_collide")
    try:
        with engine.begin() as conn:
            _insert_property(conn, 1, "acc-1")
            _insert_property(conn, 2, "ACC-1")
            _insert_property(conn, 3, "B-2")
        with pytest.raises(Exception, match=r"property 1 'acc-1', property 2 'ACC-1'"):
            migrations.upgrade("vigil_property", url)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT id, account_number FROM properties ORDER BY id")).all()
            assert [tuple(row) for row in rows] == [(1, "acc-1"), (2, "ACC-1"), (3, "B-2")]
        with engine.begin() as conn:
            conn.execute(text("UPDATE properties SET account_number = 'ACC-1-B' WHERE id = 2"))
        migrations.upgrade("vigil_property", url)  # renumbered: the upgrade goes through
    finally:
        engine.dispose()
