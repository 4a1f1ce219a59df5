"""Billing at scale, on PostgreSQL: the recurring run of many customers, and a parent's combined ledger.

    .venv/bin/python bench/bench_billing.py                       # 100,000 customers, 500 subs × 100 invoices
    .venv/bin/python bench/bench_billing.py --customers 20000     # a quicker run

What it does:
1. Creates a fresh PostgreSQL database and migrates it with billing's migrations.
2. Loads ``--customers`` customers (replica rows) each with one active monthly recurring invoice due
   today (SQL ``generate_series``), then times :func:`vigil_billing.recurring.run_due_invoices` — the
   job the beat runs — issuing them all, and checks each period was issued once (a second run
   issues nothing). Its **floor** is the same work done by hand-written set-based SQL in the same
   run (the next period of every template: invoices, lines, ledger postings and totals, outbox
   events, the counter and the templates' next dates, in one transaction).
3. Loads a parent with ``--subs`` sub-customers and ``--transactions`` issued invoices billed to the
   parent (and their ledger postings, as the 0010 migration backfills them), and times page 1 of
   the parent's combined transactions (``ledger.transactions``, with its running balance)
   ``--repeat`` times; floor: the raw SQL reading the same page and stored total.
4. Times the AR aging (``ledger.ar_aging``, summed in SQL) over every open invoice loaded above, and
   its floor, one raw grouped query. Issue 11 sets no target for it.

Each line prints the target, the figure, the floor measured in the same run and the ratio, and the
load average (the machine is shared). Targets (issue 11): the recurring run of 100,000 customers
≤ 60 s; page 1 of the combined transactions ≤ 50 ms p95. The database is dropped at the end unless
``--keep``.
"""

from __future__ import annotations

import argparse
import os
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
from vigil_billing.recurring import add_months
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


def load() -> str:
    return "load " + " ".join(f"{value:.1f}" for value in os.getloadavg())


def p95(timings: list[float]) -> float:
    ordered = sorted(timings)
    return ordered[max(0, int(len(ordered) * 0.95) - 1)]


# The floor of the recurring run: the same writes as hand-written set-based SQL, one transaction.
FLOOR_RECURRING = [
    "CREATE TEMP TABLE floor_due ON COMMIT DROP AS"
    " SELECT t.id, t.customer_id, t.bill_to_customer_id, t.memo, t.lines, t.next_date AS day,"
    " t.id || ':' || t.next_date AS period_key, c.last_number + row_number() OVER (ORDER BY t.id) AS number,"
    " l.subtotal, l.tax"
    " FROM recurring_invoices t CROSS JOIN invoice_counters c,"
    " LATERAL (SELECT sum((e->>'quantity')::bigint * (e->>'unit_price')::bigint) AS subtotal,"
    "  sum(round((e->>'quantity')::bigint * (e->>'unit_price')::bigint * (e->>'tax_rate_bp')::numeric / 10000))"
    "  AS tax FROM json_array_elements(t.lines) e) l"
    " WHERE c.id = 1 AND t.status = 'active' AND t.next_date <= :day",
    "UPDATE invoice_counters SET last_number = last_number + (SELECT count(*) FROM floor_due) WHERE id = 1",
    "INSERT INTO invoices (customer_id, bill_to_customer_id, status, number, currency, issue_date, due_date, memo,"
    " subtotal, tax_total, total, amount_paid, recurring_invoice_id, period_key, created_at, updated_at, version)"
    " SELECT customer_id, bill_to_customer_id, 'issued', number, 'USD', day, day + 30, memo, subtotal, tax,"
    " subtotal + tax, 0, id, period_key, now(), now(), 1 FROM floor_due",
    "INSERT INTO invoice_lines (invoice_id, position, description, quantity, unit_price, amount, tax_rate_bp, tax)"
    " SELECT i.id, e.n, e.v->>'description', (e.v->>'quantity')::int, (e.v->>'unit_price')::bigint,"
    " (e.v->>'quantity')::bigint * (e.v->>'unit_price')::bigint, (e.v->>'tax_rate_bp')::int,"
    " round((e.v->>'quantity')::bigint * (e.v->>'unit_price')::bigint * (e.v->>'tax_rate_bp')::numeric / 10000)"
    " FROM floor_due f JOIN invoices i ON i.period_key = f.period_key,"
    " json_array_elements(f.lines) WITH ORDINALITY AS e(v, n)",
    "INSERT INTO ledger_entries (account_id, customer_id, kind, rank, ref_id, day, number, amount)"
    " SELECT i.bill_to_customer_id, i.customer_id, 'invoice', 1, i.id, i.issue_date, i.number, i.total"
    " FROM floor_due f JOIN invoices i ON i.period_key = f.period_key",
    "INSERT INTO ledger_accounts (customer_id, balance, entries)"
    " SELECT bill_to_customer_id, sum(subtotal + tax), count(*) FROM floor_due GROUP BY bill_to_customer_id"
    " ORDER BY bill_to_customer_id ON CONFLICT (customer_id) DO UPDATE SET"
    " balance = ledger_accounts.balance + excluded.balance, entries = ledger_accounts.entries + excluded.entries",
    "INSERT INTO outbox_events (event_id, type, version, occurred_at, data)"
    " SELECT gen_random_uuid()::text, 'invoice.issued', 1, now(), json_build_object('invoice_id', i.id,"
    " 'customer_id', i.customer_id, 'number', i.number, 'total', i.total, 'currency', i.currency,"
    " 'due_date', i.due_date, 'bill_to_customer_id', NULL)"
    " FROM floor_due f JOIN invoices i ON i.period_key = f.period_key",
    "UPDATE recurring_invoices t SET next_date = (f.day + interval '1 month')::date, updated_at = now(),"
    " version = t.version + 1 FROM floor_due f WHERE t.id = f.id",
]

FLOOR_PAGE = (
    "SELECT kind, ref_id, day, customer_id, number, amount,"
    " (SELECT balance FROM ledger_accounts WHERE customer_id = :account)"
    " - coalesce(sum(amount) OVER (ORDER BY day DESC, rank DESC, ref_id DESC"
    " ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS balance"
    " FROM (SELECT * FROM ledger_entries WHERE account_id = :account"
    " ORDER BY day DESC, rank DESC, ref_id DESC LIMIT 20) page ORDER BY day DESC, rank DESC, ref_id DESC"
)

FLOOR_AGING = (
    "SELECT g.*, count(*) OVER (), sum(c0) OVER (), sum(c1) OVER (), sum(c2) OVER (), sum(c3) OVER (),"
    " sum(c4) OVER (), sum(total) OVER () FROM (SELECT i.bill_to_customer_id AS customer_id, k.location_id,"
    " sum(CASE WHEN i.due_date >= :today THEN i.total - i.amount_paid ELSE 0 END) AS c0,"
    " sum(CASE WHEN i.due_date < :today AND i.due_date >= :today - 30 THEN i.total - i.amount_paid ELSE 0 END) AS c1,"
    " sum(CASE WHEN i.due_date < :today - 30 AND i.due_date >= :today - 60 THEN i.total - i.amount_paid ELSE 0 END)"
    " AS c2,"
    " sum(CASE WHEN i.due_date < :today - 60 AND i.due_date >= :today - 90 THEN i.total - i.amount_paid ELSE 0 END)"
    " AS c3,"
    " sum(CASE WHEN i.due_date < :today - 90 THEN i.total - i.amount_paid ELSE 0 END) AS c4,"
    " sum(i.total - i.amount_paid) AS total"
    " FROM invoices i JOIN known_customers k ON k.customer_id = i.bill_to_customer_id"
    " WHERE i.status IN ('issued', 'partially_paid') AND NOT k.deleted AND k.location_id = :location"
    " GROUP BY i.bill_to_customer_id, k.location_id) g ORDER BY total DESC, customer_id LIMIT 20"
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--subs", type=int, default=500)
    parser.add_argument("--transactions", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=200)
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
        print(f"{load()} before the recurring run", flush=True)
        started = time.perf_counter()
        issued = recurring.run_due_invoices(runtime.db.transaction, outbox, today)
        elapsed = time.perf_counter() - started
        again = recurring.run_due_invoices(runtime.db.transaction, outbox, today)
        next_period = add_months(today, 1, today.day)
        started = time.perf_counter()
        with engine.begin() as conn:
            for statement in FLOOR_RECURRING:
                conn.execute(text(statement), {"day": next_period})
        floor = time.perf_counter() - started
        with engine.connect() as conn:
            floor_issued = conn.execute(
                text("SELECT count(*) FROM invoices WHERE issue_date = :day"), {"day": next_period}
            ).scalar_one()
        target = 60 * args.customers / 100_000
        print(
            f"recurring run: {issued} invoices for {args.customers} customers in {elapsed:.1f} s "
            f"({issued / elapsed:.0f}/s; target ≤ {target:.0f} s, i.e. ≤ 60 s for 100,000: "
            f"{'MET' if elapsed <= target else 'NOT MET'}); second run issued {again}; "
            f"floor (raw set-based SQL, {floor_issued} invoices of the next period) {floor:.1f} s, "
            f"ratio {elapsed / floor:.1f}x; {load()}",
            flush=True,
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
                    " :today - (g % 700), :today - (g % 700) + 30, 2999, 0, 2999, 0, now(), now(), 1"
                    " FROM generate_series(1, :n) g"
                ),
                {"parent": parent, "subs": args.subs, "n": args.transactions, "today": today},
            )
            conn.execute(  # their postings, as the 0010 migration backfills existing invoices
                text(
                    "INSERT INTO ledger_entries (account_id, customer_id, kind, rank, ref_id, day, number, amount)"
                    " SELECT bill_to_customer_id, customer_id, 'invoice', 1, id, issue_date, number, total"
                    " FROM invoices WHERE bill_to_customer_id = :parent"
                ),
                {"parent": parent},
            )
            conn.execute(
                text(
                    "INSERT INTO ledger_accounts (customer_id, balance, entries) SELECT account_id, sum(amount),"
                    " count(*) FROM ledger_entries WHERE account_id = :parent GROUP BY account_id"
                ),
                {"parent": parent},
            )
            conn.execute(text("ANALYZE"))
        with runtime.db.new_session() as session:
            page = ledger.transactions(session, parent, 1, 20)
            assert page.total == args.transactions and len(page.items) == 20
            timings = benchkit.per_call_ms(
                lambda: (ledger.transactions(session, parent, 1, 20), session.rollback()), args.repeat
            )
        with engine.connect() as conn:
            floor_rows = conn.execute(text(FLOOR_PAGE), {"account": parent}).all()
            assert [int(row.balance) for row in floor_rows] == [item["balance"] for item in page.items]
            floors = benchkit.per_call_ms(
                lambda: (conn.execute(text(FLOOR_PAGE), {"account": parent}).all(), conn.rollback()), args.repeat
            )
        print(
            f"combined transactions of a parent with {args.subs} subs and {page.total} entries: page 1 "
            f"median {statistics.median(timings):.1f} ms, p95 {p95(timings):.1f} ms (target ≤ 50 ms p95: "
            f"{'MET' if p95(timings) <= 50 else 'NOT MET'}); floor (raw SQL, same page) median "
            f"{statistics.median(floors):.1f} ms, p95 {p95(floors):.1f} ms, ratio {p95(timings) / p95(floors):.1f}x; "
            f"{load()}",
            flush=True,
        )

        with runtime.db.new_session() as session:
            timings = benchkit.per_call_ms(
                lambda: (ledger.ar_aging(session, today, None, 1, 1, 20), session.rollback()), max(5, args.repeat // 20)
            )
            items, counted, _totals = ledger.ar_aging(session, today, None, 1, 1, 20)
        with engine.connect() as conn:
            params = {"today": today, "location": 1}
            assert [int(row.total) for row in conn.execute(text(FLOOR_AGING), params)] == [i["total"] for i in items]
            floors = benchkit.per_call_ms(
                lambda: (conn.execute(text(FLOOR_AGING), params).all(), conn.rollback()), max(5, args.repeat // 20)
            )
        print(
            f"AR aging of location 1 ({counted} customers owing): median {statistics.median(timings):.0f} ms "
            "(no target in issue 11); floor (raw grouped SQL, page, count and totals) median "
            f"{statistics.median(floors):.0f} ms, "
            f"ratio {statistics.median(timings) / statistics.median(floors):.1f}x; {load()}",
            flush=True,
        )
        runtime.db.dispose()
    finally:
        if not args.keep:
            drop_database(name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
