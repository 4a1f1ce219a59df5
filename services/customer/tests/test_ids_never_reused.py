"""A deleted customer's id is never handed to another: stale forms, late events and replicas name only it."""

from datetime import UTC, datetime

from helpers import create
from sqlalchemy import text

from vigil_shared.testing import migrated_over


def test_a_new_customer_never_gets_the_id_of_a_deleted_one(api):
    first = create(api)
    second = create(api)
    etag = api.get(f"/api/v1/customers/{second['id']}").headers["ETag"]
    assert api.delete(f"/api/v1/customers/{second['id']}").status_code == 204

    third = create(api)
    assert third["id"] > second["id"] > first["id"]
    stale = api.patch(
        f"/api/v1/customers/{second['id']}", json={"first_name": "Overwritten"}, headers={"If-Match": etag}
    )
    assert stale.status_code == 404
    assert api.get(f"/api/v1/customers/{third['id']}").json["first_name"] == "Dana"


def test_notes_and_contacts_never_reuse_ids_either(api):
    customer = create(api)
    note = api.post(f"/api/v1/customers/{customer['id']}/notes", json={"text": "first"}).json
    assert api.delete(f"/api/v1/customers/{customer['id']}/notes/{note['id']}").status_code == 204
    again = api.post(f"/api/v1/customers/{customer['id']}/notes", json={"text": "second"}).json
    assert again["id"] > note["id"]


def test_the_migration_keeps_ids_named_by_retained_events_taken(test_databases):
    """Customer 41 was deleted before the upgrade; only its ``customer.deleted`` event still names it."""
    now = datetime(2026, 1, 2, tzinfo=UTC)
    rows = [
        (
            "INSERT INTO outbox_events (event_id, type, version, occurred_at, data) "
            "VALUES ('e1', 'customer.deleted', 1, :now, :data)",
            {"now": now, "data": '{"customer_id": 41}'},
        ),
        (
            "INSERT INTO custom_fields (id, key, label, type, options, required, applies_to, "
            "position, active, version, created_at) VALUES (7, 'gate', 'Gate', 'text', '[]', false, "
            "'both', 0, true, 1, :now)",
            {"now": now},
        ),
    ]
    url = test_databases.url_for("customer_ids_migration")
    with migrated_over("vigil_customer", url, "0004", rows) as engine, engine.begin() as conn:
        assert conn.execute(text("SELECT key FROM custom_fields WHERE id = 7")).scalar() == "gate"
        if engine.dialect.name == "sqlite":  # PostgreSQL: a sequence, which never goes back anyway
            sequence = conn.execute(text("SELECT seq FROM sqlite_sequence WHERE name = 'customers'")).scalar()
            assert sequence == 41
            conn.execute(
                text(
                    "INSERT INTO custom_fields (key, label, type, options, required, applies_to, "
                    "position, active, version, created_at) VALUES ('dog', 'Dog', 'text', '[]', "
                    "false, 'both', 0, true, 1, :now)"
                ),
                {"now": now},
            )
            assert conn.execute(text("SELECT max(id) FROM custom_fields")).scalar() == 8
