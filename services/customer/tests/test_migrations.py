from datetime import UTC

from vigil_customer.models import Base
from vigil_shared.testing import assert_migrations_round_trip


def test_migrations_match_the_models_and_go_down_and_up_again(test_databases):
    assert_migrations_round_trip("vigil_customer", Base.metadata, test_databases.url_for("customer_migrations"))


def test_existing_customers_survive_the_move_to_the_full_record(test_databases):
    from datetime import datetime

    from sqlalchemy import text

    from vigil_shared import migrations
    from vigil_shared.db import build_engine

    url = test_databases.url_for("customer_data_migration")
    migrations.upgrade("vigil_customer", url, "0001")
    engine = build_engine(url)
    try:
        now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO customers (first_name, last_name, email, email_key, phone, active, "
                    "created_at, updated_at, version) VALUES ('José', 'Núñez', 'J@X.com', 'j@x.com', "
                    "'613-555-1234', true, :now, :now, 1)"
                ),
                {"now": now},
            )
        migrations.upgrade("vigil_customer", url)
        with engine.connect() as conn:
            row = conn.execute(
                text("SELECT id, kind, primary_phone, primary_phone_e164, sort_name FROM customers")
            ).one()
            covered = dict(conn.execute(text("SELECT term, covered FROM customer_search_terms")).all())
            terms = set(covered)
        assert row.kind == "customer" and row.primary_phone == "613-555-1234"
        assert row.primary_phone_e164 == "+16135551234" and row.sort_name == "nunez jose"
        assert {"jose", "nunez", "j@x.com", "6135551234", "5551234", f"#{row.id}"} <= terms
        assert covered["j@x.com"] == 0 and covered["jose"] == 0
        migrations.downgrade("vigil_customer", url, "0001")
        with engine.connect() as conn:
            assert conn.execute(text("SELECT phone FROM customers")).scalar() == "613-555-1234"
    finally:
        engine.dispose()
