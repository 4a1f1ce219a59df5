from datetime import UTC, datetime

from sqlalchemy import text

from vigil_customer.models import Base
from vigil_shared import migrations
from vigil_shared.testing import assert_migrations_round_trip, migrated_over


def test_migrations_match_the_models_and_go_down_and_up_again(test_databases):
    assert_migrations_round_trip("vigil_customer", Base.metadata, test_databases.url_for("customer_migrations"))


def test_existing_customers_survive_the_move_to_the_full_record(test_databases):
    insert = (
        "INSERT INTO customers (first_name, last_name, email, email_key, phone, active, "
        "created_at, updated_at, version) VALUES ('José', 'Núñez', 'J@X.com', 'j@x.com', "
        "'613-555-1234', true, :now, :now, 1)"
    )
    rows = [(insert, {"now": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)})]
    url = test_databases.url_for("customer_data_migration")
    with migrated_over("vigil_customer", url, "0001", rows) as engine:
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


def test_free_text_monitored_by_becomes_the_catalog(test_databases):
    insert = (
        "INSERT INTO customers (kind, active, first_name, last_name, sort_name, monitored_by,"
        " custom_fields, created_at, updated_at, version)"
        " VALUES ('customer', true, :f, 'X', :f, :m, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"
    )
    named_by = (("A", "ADT"), ("B", " adt "), ("C", "Brinks"), ("D", None), ("E", ""))
    rows = [(insert, {"f": first, "m": monitored_by}) for first, monitored_by in named_by]
    url = test_databases.url_for("customer_monitored_by_migration")
    with migrated_over("vigil_customer", url, "0006", rows) as engine, engine.connect() as conn:
        companies = {
            row.name_key: (row.id, row.is_adt)
            for row in conn.execute(text("SELECT id, name_key, is_adt FROM monitoring_companies"))
        }
        named = dict(conn.execute(text("SELECT first_name, monitoring_company_id FROM customers")).all())
    assert set(companies) == {"adt", "brinks"} and companies["adt"][1] and not companies["brinks"][1]
    assert named == {
        "A": companies["adt"][0],
        "B": companies["adt"][0],
        "C": companies["brinks"][0],
        "D": None,
        "E": None,
    }


def test_search_pairs_are_backfilled_from_the_terms_of_existing_records(test_databases):
    """Migration 0011 derives the pairs of records written before it from their search terms: every two
    terms a word of four letters or more can match (not ``#id``, digits, three letters, or an email a
    name covers), lower first, with the record's kind, location and sort key."""
    record = (
        "INSERT INTO customers (id, kind, location_id, active, first_name, last_name, sort_name, custom_fields,"
        " created_at, updated_at, version)"
        " VALUES (7, 'lead', 3, true, 'James', 'Smith', 'smith james', '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"
    )
    term = (
        "INSERT INTO customer_search_terms (customer_id, term, head, covered, kind, location_id, sort_name)"
        " VALUES (7, :t, :h, :c, 'lead', 3, 'smith james')"
    )
    terms = {
        "#7": 0,
        "james": 0,
        "smith": 0,
        "james.smith@corp.example": 5,
        "corp.example": 0,
        "lee": 0,
        "6135551234": 0,
    }
    rows = [(record, {}), *((term, {"t": t, "h": t[:3], "c": c}) for t, c in terms.items())]
    url = test_databases.url_for("customer_search_pairs_migration")
    with migrated_over("vigil_customer", url, "0010", rows) as engine, engine.connect() as conn:
        pairs = conn.execute(
            text(
                "SELECT customer_id, lo, hi, lo_head, hi_head, kind, location_id, sort_name FROM customer_search_pairs"
            )
        ).all()
    assert {tuple(p) for p in pairs} == {
        (7, lo, hi, lo[:3], hi[:3], "lead", 3, "smith james")
        for lo, hi in (("corp.example", "james"), ("corp.example", "smith"), ("james", "smith"))
    }
