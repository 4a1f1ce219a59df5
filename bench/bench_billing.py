"""Billing at scale, on PostgreSQL: the recurring run of many customers, and a parent's combined ledger.

    .venv/bin/python bench/bench_billing.py                       # 100,000 customers, 500 subs × 100 invoices
    .venv/bin/python bench/bench_billing.py --customers 20000     # a quicker run

What it does:
1. Creates a fresh PostgreSQL database and migrates it with billing's migrations.
2. Loads ``--customers`` customers (replica rows) each with one active monthly recurring invoice due
   today (SQL ``generate_series``), then times :func:`vigil_billing.recurring.run_due_invoices` — the
   job the beat runs — issuing them all, and checks each period was issued once (a second run
   issues nothing).
3. Loads a parent with ``--subs`` sub-customers and ``--transactions`` issued invoices billed to the
   parent, and times page 1 of the parent's combined transactions (``ledger.transactions``, with its
   running balance) ``--repeat`` times.

Targets (issue 11): the recurring run of 100,000 customers ≤ 60 s; page 1 of the combined
transactions ≤ 50 ms p95. The database is dropped at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from datetime import date

import benchkit
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from vigil_billing import ledger, recurring
from vigil_billing.app import program
from vigil_shared import migrations
from vigil_shared.testing import postgres_admin_url


def fresh_database() -> tuple[str, str]:
    name = f"vigil_bench_billing_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    url = make_url(postgres_admin_url()).set(database=name, drivername="postgresql+psycopg")
    return name, url.render_as_string(hide_password=False)


def drop_database(name: str) -> None:
    admin = create_engine(postgres_admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--subs", type=int, default=500)
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=50)
    parser.add_argument("--keep", action="store_true")
    args = parser.parse_args(argv)

    name, url = fresh_database()
    try:
        migrations.upgrade("vigil_billing", url)
        settings = benchkit.service_settings("billing", url, None, log_level=None)
        runtime = program.runtime(settings)
        today = date.today()
        engine = runtime.db.engine
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO known_customers (customer_id, deleted, location_id, kind, archived, updated_at) "
                    "SELECT g, false, 1 + g % 5, 'customer', false, now() FROM generate_series(1, :n) g"
                ),
                {"n": args.customers},
            )
            conn.execute(
                text(
                    "INSERT INTO recurring_invoices (customer_id, bill_to_customer_id, lines, interval_months,"
                    " start_date, next_date, status, created_at, updated_at, version)"
                    " SELECT g, g, CAST(:lines AS json), 1, :today, :today, 'active', now(), now(), 1"
                    " FROM generate_series(1, :n) g"
                ),
                {
                    "n": args.customers,
                    "today": today,
                    "lines": '[{"description": "Monitoring", "quantity": 1, "unit_price": 2999, "tax_rate_bp": 825}]',
                },
            )
            conn.execute(text("ANALYZE"))
        outbox = runtime.outbox()
        started = time.perf_counter()
        issued = recurring.run_due_invoices(runtime.db.transaction, outbox, today)
        elapsed = time.perf_counter() - started
        again = recurring.run_due_invoices(runtime.db.transaction, outbox, today)
        print(
            f"recurring run: {issued} invoices for {args.customers} customers in {elapsed:.1f} s "
            f"({issued / elapsed:.0f}/s; target ≤ 60 s for 100,000); second run issued {again}"
        )

        parent = args.customers + 1
        with engine.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO known_customers (customer_id, deleted, location_id, kind, parent_id, archived,"
                    " updated_at) SELECT :parent + g, false, 1, 'customer',"
                    " CASE WHEN g = 0 THEN NULL ELSE :parent END, false, now() FROM generate_series(0, :subs) g"
                ),
                {"parent": parent, "subs": args.subs},
            )
            conn.execute(
                text(
                    "INSERT INTO invoices (customer_id, bill_to_customer_id, status, number, currency, issue_date,"
                    " due_date, subtotal, tax_total, total, amount_paid, created_at, updated_at, version)"
                    " SELECT :parent + 1 + g % :subs, :parent, 'issued', 10000000 + g, 'USD',"
                    " :today - (g % 700), :today, 2999, 0, 2999, 0, now(), now(), 1"
                    " FROM generate_series(1, :n) g"
                ),
                {"parent": parent, "subs": args.subs, "n": args.transactions, "today": today},
            )
            conn.execute(text("ANALYZE"))
        timings = []
        with runtime.db.new_session() as session:
            for _ in range(args.repeat):
                started = time.perf_counter()
                page = ledger.transactions(session, parent, 1, 20)
                timings.append((time.perf_counter() - started) * 1000)
                session.rollback()
        timings.sort()
        p95 = timings[max(0, int(len(timings) * 0.95) - 1)]
        print(
            f"combined transactions of a parent with {args.subs} subs and {page.total} entries: page 1 "
            f"median {statistics.median(timings):.1f} ms, p95 {p95:.1f} ms (target ≤ 50 ms)"
        )
        runtime.db.dispose()
    finally:
        if not args.keep:
            drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
