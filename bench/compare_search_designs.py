"""Customer search: the term table against PostgreSQL full-text search, pg_trgm and SQLite FTS5.

    .venv/bin/python bench/bench_customer_search.py --customers 1000000 --skip-sqlite --keep
    .venv/bin/python bench/compare_search_designs.py --database vigil_bench_xxxxxxxx [--sqlite-customers 200000]

Every design answers the same question with the same words: page 1 (ids of the first 21 records in
name order, in the caller's locations 1, 2 and 4) and the total bounded at 10,001, then the 20
records themselves. The words are the service's own (``search.terms_of``, read back from the term
table of the kept database), so the designs differ only in where they keep them:

- ``term table``: today's ``customer_search_terms`` (one row per word, two covering indexes),
  through ``search.list_customers``.
- ``tsvector``: one ``tsvector`` column on ``customers`` built from the same words
  (``array_to_tsvector``), GIN index, a prefix ``tsquery`` (``'smi':*``).
- ``pg_trgm``: one text column on ``customers`` (`` word word …``), GIN trigram index,
  ``LIKE '% smi%'`` (a word that starts with the fragment).
- ``naive``: ``ILIKE '%…%'`` on the raw columns with trigram indexes (the bench's baseline).

On SQLite the term table (through the service's function) is compared with FTS5, both with the
``trigram`` tokenizer (``LIKE '% smi%'`` served by the FTS index) and with the default tokenizer
and prefix queries (``"smi"*``).

Prints p50/p95 per kind of search for each design, the build time and size of each index, and the
write cost (rows and index entries per customer).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session

sys.path.insert(0, str(Path(__file__).parent))

from bench_customer_search import (  # noqa: E402
    VISIBLE_LOCATIONS,
    naive_kind,
    naive_query,
    percentile,
    samples_from,
    sqlite_load,
)

from vigil_customer import search  # noqa: E402
from vigil_customer.models import Customer  # noqa: E402
from vigil_shared import migrations  # noqa: E402
from vigil_shared.testing import postgres_admin_url  # noqa: E402

LIMIT = search.EXACT_TOTAL_LIMIT + 1
VISIBLE = ", ".join(str(v) for v in VISIBLE_LOCATIONS)


def tsquery(tokens: list[str]) -> str:
    return " & ".join("'" + t.replace("\\", "\\\\").replace("'", "''") + "':*" for t in tokens)


def like_patterns(tokens: list[str]) -> list[str]:
    return ["% " + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for t in tokens]


def design_query(session: Session, where: str, params: dict) -> tuple[list, int]:
    """Page 1 (21 ids in name order), the bounded total, then the 20 records."""
    ids = [
        row[0]
        for row in session.execute(
            text(
                f"SELECT id FROM customers WHERE {where} AND location_id IN ({VISIBLE}) ORDER BY sort_name, id LIMIT 21"
            ),
            params,
        )
    ]
    total = session.execute(
        text(
            f"SELECT count(*) FROM (SELECT 1 FROM customers WHERE {where} AND location_id IN ({VISIBLE}) "
            f"LIMIT {LIMIT}) AS s"
        ),
        params,
    ).scalar()
    rows = session.scalars(select(Customer).where(Customer.id.in_(ids[:20]))).all() if ids else []
    return list(rows), int(total or 0)


def term_table(session: Session, q: str) -> tuple[list, int]:
    result = search.list_customers(
        session.connection(),
        search.ListQuery(q=q),
        search.Visibility(frozenset(VISIBLE_LOCATIONS), frozenset(VISIBLE_LOCATIONS)),
    )
    return result.rows, result.total


def tsvector(session: Session, q: str) -> tuple[list, int]:
    return design_query(session, "search_vector @@ CAST(:q AS tsquery)", {"q": tsquery(search.query_tokens(q))})


def trigram(session: Session, q: str) -> tuple[list, int]:
    patterns = like_patterns(search.query_tokens(q))
    where = " AND ".join(f"search_text LIKE :p{i}" for i in range(len(patterns)))
    return design_query(session, where, {f"p{i}": p for i, p in enumerate(patterns)})


def time_design(engine, fn, values: list[str], runs: int) -> tuple[list[float], int]:
    times, total = [], 0
    with Session(engine) as session:
        for i in range(runs + 5):
            value = values[i % len(values)]
            started = time.perf_counter()
            _, found = fn(session, value)
            elapsed = (time.perf_counter() - started) * 1000
            session.rollback()
            session.expunge_all()
            if i >= 5:
                times.append(elapsed)
            if i == 5:
                total = found
    return times, total


def time_naive(engine, label: str, values: list[str], runs: int) -> list[float]:
    times = []
    with engine.connect() as conn:
        for i in range(runs + 5):
            started = time.perf_counter()
            naive_query(conn, naive_kind(label), values[i % len(values)])
            if i >= 5:
                times.append((time.perf_counter() - started) * 1000)
    return times


def build_postgres(url: str) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        has = conn.execute(
            text(
                "SELECT 1 FROM information_schema.columns "
                "WHERE table_name = 'customers' AND column_name = 'search_text'"
            )
        ).first()
        if has:
            return
        conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
        conn.execute(text("SET maintenance_work_mem = '512MB'"))
        started = time.perf_counter()
        conn.execute(text("ALTER TABLE customers ADD COLUMN search_vector tsvector, ADD COLUMN search_text text"))
        conn.execute(
            text(
                "UPDATE customers c SET search_vector = array_to_tsvector(t.terms), "
                "search_text = ' ' || array_to_string(t.terms, ' ') "
                "FROM (SELECT customer_id, array_agg(term ORDER BY term) AS terms FROM customer_search_terms "
                "GROUP BY customer_id) AS t WHERE t.customer_id = c.id"
            )
        )
        conn.execute(text("VACUUM customers"))
        print(f"  columns filled from the term table in {time.perf_counter() - started:.0f} s", flush=True)
        for name, definition in (
            ("bench_tsvector", "CREATE INDEX bench_tsvector ON customers USING gin (search_vector)"),
            ("bench_trgm_search", "CREATE INDEX bench_trgm_search ON customers USING gin (search_text gin_trgm_ops)"),
        ):
            started = time.perf_counter()
            conn.execute(text(definition))
            print(f"  {name} built in {time.perf_counter() - started:.0f} s", flush=True)
        conn.execute(text("ANALYZE customers"))
    engine.dispose()


def sizes_postgres(url: str) -> None:
    engine = create_engine(url)
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT relname, pg_size_pretty(pg_relation_size(oid)) FROM pg_class WHERE relname IN "
                "('customer_search_terms', 'ix_customer_search_terms_match', 'ix_customer_search_terms_walk', "
                "'ix_customer_search_terms_customer_id', 'bench_tsvector', 'bench_trgm_search') ORDER BY relname"
            )
        ).all()
        terms = conn.execute(text("SELECT count(*) FROM customer_search_terms")).scalar()
        customers = conn.execute(text("SELECT count(*) FROM customers")).scalar()
    engine.dispose()
    print(f"  term rows: {terms:,} for {customers:,} customers ({terms / customers:.1f} a customer)")
    for name, size in rows:
        print(f"    {name:<40}{size:>10}")


def report(results: dict[str, dict[str, tuple[list[float], int]]]) -> None:
    designs = list(next(iter(results.values())).keys())
    header = "".join(f"{d + ' p50/p95':>24}" for d in designs)
    print(f"  {'search':<24}{header}")
    for label, by_design in results.items():
        cells = []
        for design in designs:
            times, total = by_design[design]
            cells.append(f"{percentile(times, 50):>8.1f}/{percentile(times, 95):5.1f}ms ({total:>6})")
        print(f"  {label:<24}{''.join(f'{c:>24}' for c in cells)}")


def timed(query):
    """A design timed by ``time_design`` with ``query(session, q)``."""
    return lambda engine, label, values, runs: time_design(engine, query, values, runs)


def compare(url: str, designs: dict, runs: int, how: str) -> None:
    """Times every design on the same sample searches of the database at ``url`` and prints the table."""
    engine = create_engine(url)
    results: dict[str, dict[str, tuple[list[float], int]]] = {}
    for label, values in samples_from(url).items():
        values = [v for v in values if v]
        results[label] = {name: design(engine, label, values, runs) for name, design in designs.items()}
    engine.dispose()
    print(f"\n  page 1 + bounded total + 20 records, {runs} queries per search, {how}:")
    report(results)


def run_postgres(args) -> None:
    url = make_url(args.postgres_url or postgres_admin_url()).set(database=args.database)
    url_text = url.render_as_string(hide_password=False)
    print(f"\nPostgreSQL, database {args.database}")
    build_postgres(url_text)
    sizes_postgres(url_text)
    designs = {
        "term table": timed(term_table),
        "tsvector": timed(tsvector),
        "pg_trgm": timed(trigram),
        "naive": lambda engine, label, values, runs: (time_naive(engine, label, values, runs), 0),
    }
    compare(url_text, designs, args.runs, "in process (no HTTP)")


# --- SQLite ---------------------------------------------------------------------------------------


def build_sqlite(url: str) -> None:
    engine = create_engine(url)
    with engine.begin() as conn:
        started = time.perf_counter()
        conn.execute(
            text(
                "CREATE TEMP TABLE words AS SELECT customer_id, ' ' || group_concat(term, ' ') AS body "
                "FROM (SELECT customer_id, term FROM customer_search_terms ORDER BY customer_id, term) "
                "GROUP BY customer_id"
            )
        )
        for name, tokenizer in (("fts_trigram", "trigram"), ("fts_words", "unicode61 tokenchars '''@.+-#'")):
            conn.execute(text(f'CREATE VIRTUAL TABLE {name} USING fts5(body, tokenize="{tokenizer}", detail=none)'))
            conn.execute(text(f"INSERT INTO {name} (rowid, body) SELECT customer_id, body FROM words"))
        print(f"  FTS5 tables filled in {time.perf_counter() - started:.0f} s", flush=True)
    engine.dispose()


def fts_query(table: str, session: Session, q: str) -> tuple[list, int]:
    tokens = search.query_tokens(q)
    if table == "fts_trigram":
        where = " AND ".join(f"{table}.body LIKE :p{i}" for i in range(len(tokens)))
        params = {f"p{i}": p for i, p in enumerate(like_patterns(tokens))}
    else:
        where = f"{table} MATCH :m"
        params = {"m": " ".join('"' + t.replace('"', '""') + '"*' for t in tokens)}
    source = f"customers c JOIN {table} ON {table}.rowid = c.id WHERE {where} AND c.location_id IN ({VISIBLE})"
    ids = [
        r[0] for r in session.execute(text(f"SELECT c.id FROM {source} ORDER BY c.sort_name, c.id LIMIT 21"), params)
    ]
    total = session.execute(text(f"SELECT count(*) FROM (SELECT 1 FROM {source} LIMIT {LIMIT})"), params).scalar()
    rows = session.scalars(select(Customer).where(Customer.id.in_(ids[:20]))).all() if ids else []
    return list(rows), int(total or 0)


def run_sqlite(args) -> None:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'customer.db'}"
        print(f"\nSQLite: {args.sqlite_customers:,} customers", flush=True)
        migrations.upgrade("vigil_customer", url)
        started = time.perf_counter()
        sqlite_load(url, args.sqlite_customers)
        print(f"  loaded (with the term table) in {time.perf_counter() - started:.0f} s", flush=True)
        build_sqlite(url)
        designs = {
            "term table": timed(term_table),
            "FTS5 trigram": timed(lambda s, q: fts_query("fts_trigram", s, q)),
            "FTS5 words*": timed(lambda s, q: fts_query("fts_words", s, q)),
        }
        compare(url, designs, args.runs, "in process")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--database", help="a database kept by bench_customer_search.py --keep")
    parser.add_argument("--postgres-url", help="admin URL (default: VIGIL_TEST_POSTGRES_URL or local postgres)")
    parser.add_argument("--sqlite-customers", type=int, default=0)
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args(argv)
    if args.database:
        run_postgres(args)
    if args.sqlite_customers:
        run_sqlite(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
