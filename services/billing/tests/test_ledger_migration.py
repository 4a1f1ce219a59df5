"""Migration 0010 builds the ledger of what was billed before it: the same entries, the same totals."""

from sqlalchemy import create_engine, text

from vigil_shared import migrations


def test_the_ledger_migration_backfills_existing_invoices_payments_and_refunds(test_databases):
    url = test_databases.url_for("billing_ledger_backfill")
    migrations.upgrade("vigil_billing", url, "0009")
    engine = create_engine(url)
    now = "2026-03-04 10:00:00+00:00"
    columns = "(id, customer_id, bill_to_customer_id, status, number, currency, issue_date, voided_at, subtotal,"
    columns += " tax_total, total, amount_paid, created_at, updated_at, version)"
    with engine.begin() as conn:
        conn.execute(
            text(
                f"INSERT INTO invoices {columns} VALUES"
                " (1, 8, 7, 'issued', 1, 'USD', '2026-01-05', NULL, 1000, 0, 1000, 0, :now, :now, 1),"
                " (2, 7, 7, 'void', 2, 'USD', '2026-02-01', :now, 300, 0, 300, 0, :now, :now, 1),"
                " (3, 7, 7, 'draft', NULL, 'USD', NULL, NULL, 50, 0, 50, 0, :now, :now, 1)"
            ),
            {"now": now},
        )
        conn.execute(
            text(
                "INSERT INTO payments (id, customer_id, method, amount, currency, status, amount_refunded,"
                " unallocated, allocate_to, received_at, created_at, updated_at, version) VALUES"
                " (1, 7, 'cash', 600, 'USD', 'succeeded', 100, 0, '[]', :now, :now, :now, 1),"
                " (2, 7, 'card', 900, 'USD', 'failed', 0, 0, '[]', NULL, :now, :now, 1)"
            ),
            {"now": now},
        )
        conn.execute(
            text("INSERT INTO refunds (id, payment_id, amount, created_at) VALUES (1, 1, 100, :now)"), {"now": now}
        )
    migrations.upgrade("vigil_billing", url)
    with engine.connect() as conn:
        entries = conn.execute(
            text("SELECT account_id, customer_id, kind, ref_id, day, amount FROM ledger_entries ORDER BY day, rank")
        ).all()
        accounts = conn.execute(text("SELECT customer_id, balance, entries FROM ledger_accounts")).all()
    engine.dispose()
    assert [(e.account_id, e.customer_id, e.kind, e.ref_id, str(e.day), e.amount) for e in entries] == [
        (7, 8, "invoice", 1, "2026-01-05", 1000),
        (7, 7, "invoice", 2, "2026-02-01", 300),
        (7, 7, "void", 2, "2026-03-04", -300),
        (7, 7, "payment", 1, "2026-03-04", -600),
        (7, 7, "refund", 1, "2026-03-04", 100),
    ]
    assert [tuple(a) for a in accounts] == [(7, 500, 5)]
