from datetime import UTC, datetime

from sqlalchemy import text

from vigil_customer import search
from vigil_customer.models import Base, Customer
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


def test_account_terms_are_told_from_the_records_own_by_migration_0012(test_databases):
    """Migration 0012 marks the terms a record holds from a property account number alone (a word that is
    also its own stays its own), recomputes the own terms' ``covered`` without them and derives the pairs
    again: the rows the service writes for the same record and accounts (``search.search_rows``)."""
    people = [
        # id, location, first, last, business, phone, account numbers (a deleted one last: ignored)
        (7, 3, "Ivy", "Quillby", None, "+18015550142", ["ACC-555"]),
        (8, 3, "Fay", "Quillby", "Unit 4413", "+18015550103", ["ACC-4413", "ABCD-77"]),
        (9, 4, "Hal", "Núñez", None, None, []),
    ]
    deleted = (99, 9, "ZZZZ-99")
    record = (
        "INSERT INTO customers (id, kind, location_id, active, first_name, last_name, business_name,"
        " primary_phone_e164, sort_name, custom_fields, created_at, updated_at, version)"
        " VALUES (:id, 'customer', :loc, true, :f, :l, :b, :p, :s, '{}', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"
    )
    account = (
        "INSERT INTO property_accounts (property_id, customer_id, account_number, deleted, updated_at)"
        " VALUES (:pid, :cid, :n, :d, CURRENT_TIMESTAMP)"
    )
    term = (
        "INSERT INTO customer_search_terms (customer_id, term, head, covered, kind, location_id, sort_name)"
        " VALUES (:customer_id, :term, :head, :covered, :kind, :location_id, :sort_name)"
    )
    pair = (
        "INSERT INTO customer_search_pairs (customer_id, lo, hi, lo_head, hi_head, kind, location_id, sort_name)"
        " VALUES (:customer_id, :lo, :hi, :lo_head, :hi_head, :kind, :location_id, :sort_name)"
    )
    rows: list = []
    expected_terms, expected_pairs = set(), set()
    for cid, loc, first, last, business, phone, numbers in people:
        made = Customer(
            id=cid,
            kind="customer",
            location_id=loc,
            first_name=first,
            last_name=last,
            business_name=business,
            primary_phone_e164=phone,
            sort_name=f"{last} {first}".lower(),
        )
        rows.append(
            (record, {"id": cid, "loc": loc, "f": first, "l": last, "b": business, "p": phone, "s": made.sort_name})
        )
        rows += [(account, {"pid": cid * 10 + i, "cid": cid, "n": n, "d": False}) for i, n in enumerate(numbers)]
        # as the code before wrote them: every term covered by every other, pairs of those
        covered = search.covered_lengths(search.terms_of(made, numbers))
        base = {"customer_id": cid, "kind": "customer", "location_id": loc, "sort_name": made.sort_name}
        rows += [(term, base | {"term": t, "head": t[:3], "covered": c}) for t, c in covered.items()]
        paired = sorted(t for t, c in covered.items() if search.pairable(t, c))
        rows += [
            (pair, base | {"lo": lo, "hi": hi, "lo_head": lo[:3], "hi_head": hi[:3]})
            for i, lo in enumerate(paired)
            for hi in paired[i + 1 :]
        ]
        terms_now, pairs_now = search.search_rows(made, numbers)
        expected_terms |= {(r["customer_id"], r["term"], r["covered"], r["source"]) for r in terms_now}
        expected_pairs |= {(r["customer_id"], r["lo"], r["hi"], r["source"]) for r in pairs_now}
    rows.append((account, {"pid": deleted[0], "cid": deleted[1], "n": deleted[2], "d": True}))
    url = test_databases.url_for("customer_account_terms_migration")
    with migrated_over("vigil_customer", url, "0011", rows) as engine, engine.connect() as conn:
        stored_terms = set(conn.execute(text("SELECT customer_id, term, covered, source FROM customer_search_terms")))
        stored_pairs = set(conn.execute(text("SELECT customer_id, lo, hi, source FROM customer_search_pairs")))
        if conn.dialect.name == "postgresql":  # rewritten rows: vacuumed after, so index-only scans stay so
            vacuumed = conn.execute(
                text(
                    "SELECT relname FROM pg_stat_user_tables WHERE last_vacuum IS NOT NULL AND last_analyze IS NOT NULL"
                    " AND relname IN ('customer_search_terms', 'customer_search_pairs')"
                )
            ).scalars()
            assert set(vacuumed) == {"customer_search_terms", "customer_search_pairs"}
    assert {tuple(r) for r in stored_terms} == expected_terms
    assert {tuple(r) for r in stored_pairs} == expected_pairs
    assert (7, "5550142", 0, 0) in expected_terms and (7, "555", 0, 1) in expected_terms, "the case it is about"
    assert (8, "4413", 0, 0) in expected_terms and (8, "abcd-77", 0, 1) in expected_terms
    assert any(p[0] == 8 and p[3] == 1 for p in expected_pairs) and any(p[0] == 8 and p[3] == 0 for p in expected_pairs)
    migrations.downgrade("vigil_customer", url, "0011")
    try:
        with engine.connect() as conn:
            covered_back = dict(
                conn.execute(text("SELECT term, covered FROM customer_search_terms WHERE customer_id = 7")).all()
            )
    finally:
        engine.dispose()
    assert covered_back["5550142"] == 3, "covered by every other term again, as the old code writes it"
