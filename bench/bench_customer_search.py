"""Customer search speed: page 1 through the service against naive SQL, and deep pages.

    .venv/bin/python bench/bench_customer_search.py                  # 1,000,000 on PostgreSQL + 100,000 on SQLite
    .venv/bin/python bench/bench_customer_search.py --customers 200000 --skip-sqlite
    .venv/bin/python bench/bench_customer_search.py --database <kept> --skip-sqlite --searches-only
    .venv/bin/python bench/bench_customer_search.py --database <kept> --skip-sqlite --searches-only --baseline main
    .venv/bin/python bench/bench_customer_search.py --database <kept> --skip-sqlite --searches-only --account-view some

What it does:
1. Loads customers with realistically skewed names into a fresh PostgreSQL database. Surnames and
   first names follow a Zipf-like curve over census-style lists plus a long tail of rare names.
   About 80 % of the customers get a property account number, and a tenth get a business name.
   Rows go in with COPY; the search terms are derived in SQL, checked against the service's own
   term builder on a sample, and the indexes are built after the load.
2. Times page 1 of `GET /api/v1/customers?q=…` through the customer service (the Flask app with
   a signed identity holding `customers.view` and `properties.view` in 3 of 5 locations; with
   `--account-view some`, `properties.view` in two of them only, so every search carries the
   account terms' condition; `none`, in none). Four kinds of search are
   timed: a name fragment (common, full and rare), an email, a phone number as typed, and an
   account number.
3. Times the same searches as naive SQL, each with a trigram index: `ILIKE '%…%'`, `ORDER BY`
   name, `LIMIT 20`, plus a `count(*)`. Service and naive requests are interleaved one by one (on
   the same sample, alternating which goes first), and each kind prints service / naive for p50 and p95.
   Then the same searches run as a block of service requests (`block p50`, `block p95`), as a
   user's session sends them: the p95 target is checked there, because between interleaved requests
   the naive SQL passes hundreds of MB of heap through shared_buffers and evicts the service's pages
   (`--order interleaved` checks it on the pairs instead; docs/performance.md has the measurements).
   Each block request's CPU in process is printed too (`cpu p50`). With `--baseline REV`, each block
   request is alternated with the same request answered by `search.py` as at git revision `REV`
   (loaded beside this one; both checked to answer every sample alike): code before and after a
   change on the same machine, request by request.
4. Times deep pages. A keyset cursor at row 500,000 (as the `Link` headers give) is compared with
   `page=25001` through the service and with raw `OFFSET 500000`.
5. Repeats the service searches on SQLite with 100,000 customers.

Targets: PostgreSQL p95 ≤ 30 ms on page 1, deep pages as fast as page 1, SQLite p95 ≤ 100 ms.
The database is dropped at the end unless `--keep`.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import benchkit
from flask import Flask, jsonify
from sqlalchemy import create_engine, insert, select, text
from sqlalchemy.engine import make_url

from vigil_customer import search
from vigil_customer.app import program
from vigil_customer.models import Customer, SearchPair, SearchTerm
from vigil_shared import migrations
from vigil_shared.identity import BINDING_HEADER, IDENTITY_HEADER, Identity, request_binding, sign_claims
from vigil_shared.testing import TEST_SECRET, postgres_admin_url
from vigil_shared.web import REQUEST_ID_HEADER

# The most common US surnames and first names, most frequent first, are data: bench/names.json.
_NAMES = json.loads(Path(__file__).with_name("names.json").read_text())
SURNAMES: list[str] = _NAMES["surnames"]
FIRST_NAMES: list[str] = _NAMES["first_names"]

# The word lists stay packed: the formatter would put each word on a line of its own.
# fmt: off
SYLLABLES = ["ka", "lo", "mi", "ra", "ten", "vor", "zu", "bel", "dan", "fi", "gor", "hal", "is", "jen", "ko", "lar",
             "mun", "nor", "pel", "quin", "ros", "sal", "tor", "ul", "vin", "wes", "xan", "yor", "zel"]
BUSINESS_WORDS = ["alarm", "secure", "guard", "home", "shield", "watch", "safe", "tech", "systems", "bakery", "dental",
                  "auto", "cafe", "realty", "market"]
# fmt: on
CITIES = [
    ("Provo", "UT"),
    ("Salt Lake City", "UT"),
    ("Ottawa", "ON"),
    ("Toronto", "ON"),
    ("Denver", "CO"),
    ("Austin", "TX"),
    ("Phoenix", "AZ"),
    ("Boise", "ID"),
    ("Reno", "NV"),
    ("Calgary", "AB"),
]
AREA_CODES = {
    "UT": ("801", "385"),
    "ON": ("613", "416"),
    "CO": ("303", "720"),
    "TX": ("512", "737"),
    "AZ": ("602", "480"),
    "ID": ("208", "986"),
    "NV": ("775", "702"),
    "AB": ("403", "587"),
}
PHONE_FORMATS = ("({a}) {p}-{s}", "{a}-{p}-{s}", "{a}.{p}.{s}", "+1 {a} {p} {s}", "{a}{p}{s}")
LOCATION_WEIGHTS = (40, 25, 15, 12, 8)  # five offices, the first one biggest
VISIBLE_LOCATIONS = (1, 2, 4)
EXCHANGES = [f"{n:03d}" for n in range(200, 1000) if n % 100 not in (11,) and n != 555 and not 950 <= n <= 959]


def zipf_weights(n: int, s: float, offset: float) -> list[float]:
    """A Zipf-Mandelbrot curve: with the defaults below, like US census frequencies (Smith ≈ 1 %)."""
    return [1 / ((rank + offset) ** s) for rank in range(1, n + 1)]


# --- generating rows ------------------------------------------------------------------------------

COLUMNS = (
    "id",
    "kind",
    "location_id",
    "first_name",
    "last_name",
    "email",
    "email_key",
    "primary_phone",
    "primary_phone_e164",
    "city",
    "state",
    "account_type",
    "business_name",
    "active",
    "sort_name",
    "custom_fields",
    "mmr_a_la_carte",
    "currency",
    "canceled",
    "installed",
    "two_way_voice",
    "cellular_backup",
    "guard_response",
    "maintenance",
    "invoicing",
    "aarp",
    "tellular",
    "pulse",
    "created_at",
    "updated_at",
    "last_activity_at",
    "version",
    "lead_status",
)


def generate(count: int, seed: int = 7):
    """Yields (customer row, account number or None) for ids 1..count."""
    rnd = random.Random(seed)
    surname_weights = zipf_weights(len(SURNAMES), 0.75, 5)
    first_weights = zipf_weights(len(FIRST_NAMES), 0.7, 12)
    start = datetime(2016, 1, 1, tzinfo=UTC)
    span = (datetime(2026, 11, 1, tzinfo=UTC) - start).total_seconds()
    used_phones: set[str] = set()
    batch = 50_000
    for base in range(1, count + 1, batch):
        n = min(batch, count + 1 - base)
        lasts = rnd.choices(SURNAMES, surname_weights, k=n)
        firsts = rnd.choices(FIRST_NAMES, first_weights, k=n)
        locations = rnd.choices(range(1, 6), LOCATION_WEIGHTS, k=n)
        for offset in range(n):
            cid = base + offset
            last = lasts[offset]
            if rnd.random() < 0.4:  # the long tail: about 40 % of people carry a rare surname
                last = "".join(rnd.choice(SYLLABLES) for _ in range(rnd.randint(2, 4)))
            first, last = firsts[offset].capitalize(), last.capitalize()
            city, state = CITIES[rnd.randrange(len(CITIES))]
            while True:
                area, exchange = rnd.choice(AREA_CODES[state]), rnd.choice(EXCHANGES)
                line = f"{rnd.randrange(10_000):04d}"
                e164 = f"+1{area}{exchange}{line}"
                if e164 not in used_phones:
                    used_phones.add(e164)
                    break
            shown = rnd.choice(PHONE_FORMATS).format(a=area, p=exchange, s=line)
            email = f"{first.lower()}.{last.lower()}{cid}@{rnd.choice(('example.com', 'mail.test', 'corp.test'))}"
            business = None
            if rnd.random() < 0.1:
                business = f"{last} {rnd.choice(BUSINESS_WORDS).capitalize()} {rnd.choice(BUSINESS_WORDS).capitalize()}"
            kind = "lead" if rnd.random() < 0.08 else "customer"
            created = start + timedelta(seconds=span * cid / (count + 1))
            row = (
                cid,
                kind,
                locations[offset],
                first,
                last,
                email,
                email,
                shown,
                e164,
                city,
                state,
                "commercial" if business else "residential",
                business,
                rnd.random() > 0.05,
                f"{last.lower()} {first.lower()}",
                "{}",
                False,
                "USD",
                False,
                False,
                False,
                False,
                False,
                False,
                False,
                False,
                False,
                False,
                created,
                created,
                created,
                1,
                "new" if kind == "lead" else None,
            )
            account = f"ACC-{cid * 7 % 10_000_000:07d}" if rnd.random() < 0.8 else None
            yield row, account


# --- loading --------------------------------------------------------------------------------------


def row_terms(row: tuple, account: str | None) -> dict[str, int]:
    """The search terms the service writes for a generated row, with their source (ASCII names: folding
    is lower-casing): the record's own, and an account number's (``search.sourced_terms``).

    ``check_terms`` compares a sample with the service's own ``search.search_rows``.
    """
    cid, email, e164, business = row[0], row[5], row[8], row[12]
    own = {f"#{cid}", row[3].lower(), row[4].lower(), email, email.split("@")[1], e164[2:], e164[5:]}
    if business:
        own.update(business.lower().split())
    accounts: set[str] = set()
    if account:
        folded = account.lower()
        accounts.update({folded, folded.replace("-", ""), folded.rsplit("-", 1)[1]})
    return search.sourced_terms(own, accounts)


def pairs_from_terms(dialect: str) -> str:
    """The pairs of the terms already written, by migration 0012's own SQL (0011's, with the pair's
    source): the rows the service writes with the terms
    (``test_pairs_written_with_the_terms_are_what_the_migration_derives_from_them``)."""
    import importlib.util

    path = Path(search.__file__).parent / "migrations" / "versions" / "0012_account_terms_by_source.py"
    spec = importlib.util.spec_from_file_location("account_terms_migration", path)
    assert spec is not None and spec.loader is not None
    migration = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(migration)
    return migration.PAIRS_FROM_TERMS.format(
        a=migration.pairable_sql("a", dialect), b=migration.pairable_sql("b", dialect), where=""
    )


def pg_load(url: str, count: int) -> None:
    import psycopg

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("SET maintenance_work_mem = '512MB'")
        conn.execute("SET max_parallel_maintenance_workers = 2")
        indexes = conn.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE tablename IN ('customers', 'customer_search_terms', "
            "'customer_search_pairs', 'property_accounts') AND indexname NOT LIKE 'pk_%' AND indexname NOT LIKE 'uq_%'"
        ).fetchall()
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.execute("ALTER TABLE customers DROP CONSTRAINT uq_customers_email_key")
        started = time.perf_counter()
        accounts = []
        with conn.cursor().copy(f"COPY customers ({', '.join(COLUMNS)}) FROM STDIN") as copy:
            for row, account in generate(count):
                copy.write_row(row)
                if account:
                    accounts.append((row[0] * 3, row[0], account, False, row[29]))
        with conn.cursor().copy(
            "COPY property_accounts (property_id, customer_id, account_number, deleted, updated_at) FROM STDIN"
        ) as copy:
            for account in accounts:
                copy.write_row(account)
        print(f"  customers and accounts copied in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        terms = 0
        with conn.cursor().copy(
            "COPY customer_search_terms (customer_id, term, head, covered, kind, location_id, sort_name, source)"
            " FROM STDIN"
        ) as copy:
            lines = []
            for row, account in generate(count):
                prefix, suffix = f"{row[0]}\t", f"\t{row[1]}\t{row[2]}\t{row[14]}"
                sources = row_terms(row, account)
                lines.extend(
                    f"{prefix}{term}\t{term[:3]}\t{covered}{suffix}\t{sources[term]}\n"
                    for term, covered in search.covered_lengths(sources).items()
                )
                if len(lines) >= 100_000:
                    terms += len(lines)
                    copy.write("".join(lines))
                    lines = []
            terms += len(lines)
            copy.write("".join(lines))
        print(f"  {terms:,} search terms copied in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        # its indexes are not built yet: a nested loop would scan the term table once per term (hours)
        conn.execute("SET enable_nestloop = off")
        pairs = conn.execute(pairs_from_terms("postgresql")).rowcount
        conn.execute("RESET enable_nestloop")
        print(f"  {pairs:,} search pairs derived from them in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        conn.execute("ALTER TABLE customers ADD CONSTRAINT uq_customers_email_key UNIQUE (email_key)")
        for _, definition in indexes:
            conn.execute(definition)
        conn.execute(f"SELECT setval('customers_id_seq', {count})")
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('customer_search_terms', 'id'), "
            "(SELECT max(id) FROM customer_search_terms))"
        )
        print(f"  {len(indexes) + 1} indexes rebuilt in {time.perf_counter() - started:.1f} s", flush=True)
        started = time.perf_counter()
        conn.execute("VACUUM (ANALYZE) customers")
        conn.execute("VACUUM (ANALYZE) customer_search_terms")
        conn.execute("VACUUM (ANALYZE) customer_search_pairs")
        conn.execute("VACUUM (ANALYZE) property_accounts")
        print(f"  vacuum and analyze in {time.perf_counter() - started:.1f} s", flush=True)


def sqlite_load(url: str, count: int) -> None:
    engine = create_engine(url)
    placeholders = ", ".join(f":{c}" for c in COLUMNS)
    with engine.begin() as conn:
        rows, accounts = [], []
        for row, account in generate(count, seed=11):
            rows.append(dict(zip(COLUMNS, row, strict=False)))
            if account:
                accounts.append(
                    {
                        "property_id": row[0] * 3,
                        "customer_id": row[0],
                        "account_number": account,
                        "deleted": False,
                        "updated_at": row[29],
                    }
                )
        conn.execute(text(f"INSERT INTO customers ({', '.join(COLUMNS)}) VALUES ({placeholders})"), rows)
        conn.execute(
            text(
                "INSERT INTO property_accounts (property_id, customer_id, account_number, deleted, updated_at) "
                "VALUES (:property_id, :customer_id, :account_number, :deleted, :updated_at)"
            ),
            accounts,
        )
    by_customer = {a["customer_id"]: [a["account_number"]] for a in accounts}
    term_rows, pair_rows = [], []
    for values in rows:
        customer = Customer(**{k: v for k, v in values.items() if k != "custom_fields"})
        terms, pairs = search.search_rows(customer, by_customer.get(customer.id, []))  # as the service writes them
        term_rows += terms
        pair_rows += pairs
    with engine.begin() as conn:
        conn.execute(insert(SearchTerm.__table__), term_rows)
        conn.execute(insert(SearchPair.__table__), pair_rows)
        conn.execute(text("ANALYZE"))
    engine.dispose()


def check_terms(url: str, sample: int = 300) -> None:
    """The SQL-derived terms equal what the service itself would write for the same records."""
    from sqlalchemy.orm import Session

    engine = create_engine(url)
    with Session(engine) as session:
        ids = [row[0] for row in session.execute(text(f"SELECT id FROM customers ORDER BY random() LIMIT {sample}"))]
        for customer in session.query(Customer).filter(Customer.id.in_(ids)):
            accounts = session.scalars(
                text("SELECT account_number FROM property_accounts WHERE customer_id = :c"), {"c": customer.id}
            ).all()
            term_rows, pair_rows = search.search_rows(customer, list(accounts))
            expected = {t["term"]: (t["covered"], t["source"]) for t in term_rows}
            stored = {
                term: (covered, source)
                for term, covered, source in session.execute(
                    text("SELECT term, covered, source FROM customer_search_terms WHERE customer_id = :c"),
                    {"c": customer.id},
                ).all()
            }
            assert stored == expected, (customer.id, set(stored.items()) ^ set(expected.items()))
            pairs = session.execute(
                text("SELECT lo, hi, source FROM customer_search_pairs WHERE customer_id = :c"), {"c": customer.id}
            ).all()
            expected_pairs = {(p["lo"], p["hi"], p["source"]) for p in pair_rows}
            assert {tuple(p) for p in pairs} == expected_pairs, (customer.id, expected_pairs)
    engine.dispose()
    print(f"  terms and pairs of {sample} sampled records equal the service's own", flush=True)


# --- measuring ------------------------------------------------------------------------------------


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered) + 0.5) - 1))]


def timed(fn, samples: list, runs: int, warmup: int = 5) -> tuple[list[float], object]:
    last = None
    for i in range(warmup):
        fn(samples[i % len(samples)])
    times = []
    for i in range(runs):
        started = time.perf_counter()
        last = fn(samples[i % len(samples)])
        times.append((time.perf_counter() - started) * 1000)
    return times, last


def timed_pair(first, second, samples: list, runs: int, warmup: int = 5) -> tuple[list[float], list[float]]:
    """Both callables timed request by request, interleaved, on the same sample each time: each pair's
    order alternates (first, second, second, first…), so both see the same machine (on a shared box the
    load moves within seconds, and blocks of one then the other compared two different machines)."""
    for i in range(warmup):
        first(samples[i % len(samples)])
        second(samples[i % len(samples)])
    times: tuple[list[float], list[float]] = ([], [])
    for i in range(runs):
        sample = samples[i % len(samples)]
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            fn = (first, second)[which]
            started = time.perf_counter()
            fn(sample)
            times[which].append((time.perf_counter() - started) * 1000)
    return times


class GatewayIdentity:
    """The identity headers the gateway sends for one caller (``vigil_gateway.identity_cache``): one
    token reused for half its lifetime, and each call's request id bound to it by an HMAC. So the
    service checks the token's signature once per token, as behind the gateway, not once per call."""

    TTL = 60

    def __init__(self, identity: Identity):
        self.claims = identity.to_claims() | {"rid": None}
        self.token, self.renew_at = "", 0.0

    def headers(self) -> dict[str, str]:
        now = time.monotonic()
        if now >= self.renew_at:
            self.token, self.renew_at = sign_claims(self.claims, TEST_SECRET, self.TTL), now + self.TTL / 2
        request_id = uuid.uuid4().hex
        return {
            IDENTITY_HEADER: self.token,
            BINDING_HEADER: request_binding(self.token, request_id, TEST_SECRET),
            REQUEST_ID_HEADER: request_id,
        }


def service_client(url: str, var_dir: str, account_view: str = "all"):
    """The service's test client as the bench user. ``account_view``: where the user holds
    ``properties.view`` among the locations it sees: ``all`` (the common role: account numbers match
    everywhere listed, so no condition on the terms' source is added, search.Visibility.account_mode),
    ``some`` (the first two: every search carries ``source = 0 OR location_id IN (…)``) or ``none``
    (``source = 0``; account numbers then match nothing)."""
    settings = benchkit.service_settings("customer", url, var_dir)
    app = program.create_app(settings)
    client = app.test_client()
    seen = frozenset({"customers.view", "leads.view", "tags.view"})
    with_properties = {"all": VISIBLE_LOCATIONS, "some": VISIBLE_LOCATIONS[:2], "none": ()}[account_view]
    user = GatewayIdentity(
        Identity(
            subject="bench",
            username="bench",
            locations={
                loc: seen | {"properties.view"} if loc in with_properties else seen for loc in VISIBLE_LOCATIONS
            },
        )
    )

    def get(path: str, **params):
        response = client.get(path, query_string=params, headers=user.headers())
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.json

    return app, get


def samples_from(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    locations = ", ".join(str(v) for v in VISIBLE_LOCATIONS)
    with engine.connect() as conn:
        size = conn.execute(text("SELECT count(*) FROM customers")).scalar()

        def pick(sql: str) -> list[str]:
            return [row[0] for row in conn.execute(text(sql))]

        picks = {
            "name: common fragment": ["smi", "john", "garc", "will", "brow", "mar", "dav", "rod", "lop", "mill"],
            "name: full, common": ["james smith", "mary johnson", "john williams", "robert brown", "linda jones"],
            "name: rare": pick(
                f"SELECT lower(last_name) FROM customers WHERE location_id IN ({locations}) "
                f"AND lower(last_name) NOT IN ({', '.join(repr(n) for n in SURNAMES)}) "
                f"ORDER BY id LIMIT 20 OFFSET {size // 1000}"
            ),
            "email": pick(
                f"SELECT substr(email, 1, 14) FROM customers WHERE location_id IN ({locations}) "
                f"AND kind = 'customer' ORDER BY id LIMIT 20 OFFSET {size // 500}"
            ),
            "phone as typed": pick(
                f"SELECT primary_phone FROM customers WHERE location_id IN ({locations}) "
                f"AND kind = 'customer' ORDER BY id LIMIT 20 OFFSET {size // 200}"
            ),
            "account number": pick(
                f"SELECT p.account_number FROM property_accounts p JOIN customers c ON "
                f"c.id = p.customer_id WHERE c.location_id IN ({locations}) AND c.kind = 'customer' "
                f"ORDER BY p.customer_id LIMIT 20 OFFSET {size // 100}"
            ),
        }
    engine.dispose()
    return picks


NAIVE = {
    "name": ("(c.first_name || ' ' || c.last_name) ILIKE :pattern", ""),
    "email": ("c.email ILIKE :pattern", ""),
    "phone": ("c.primary_phone ILIKE :pattern", ""),
    "account": ("p.account_number ILIKE :pattern", "JOIN property_accounts p ON p.customer_id = c.id"),
}
NAIVE_INDEXES = (
    "CREATE INDEX bench_trgm_name ON customers USING gin ((first_name || ' ' || last_name) gin_trgm_ops)",
    "CREATE INDEX bench_trgm_email ON customers USING gin (email gin_trgm_ops)",
    "CREATE INDEX bench_trgm_phone ON customers USING gin (primary_phone gin_trgm_ops)",
    "CREATE INDEX bench_trgm_account ON property_accounts USING gin (account_number gin_trgm_ops)",
)


def naive_query(conn, kind: str, value: str) -> int:
    where, join = NAIVE[kind]
    visible = "c.location_id IN (1, 2, 4)"
    params = {"pattern": f"%{value}%"}
    conn.execute(
        text(
            f"SELECT c.id, c.first_name, c.last_name, c.email, c.primary_phone FROM customers c {join} "
            f"WHERE {where} AND {visible} ORDER BY c.last_name, c.first_name, c.id LIMIT 20"
        ),
        params,
    ).all()
    return conn.execute(text(f"SELECT count(*) FROM customers c {join} WHERE {where} AND {visible}"), params).scalar()


def naive_kind(label: str) -> str:
    return {"email": "email", "phone as typed": "phone", "account number": "account"}.get(label, "name")


def report(rows: list[tuple], target: float | None, baseline: str | None = None) -> bool:
    """One line per kind. ``target`` (p95, ms) is checked on the block of service requests when there is
    one (a session's requests one after another, as a user sees them), else on the interleaved ones;
    the ratios to the naive SQL are always those of the interleaved pairs (same sample, same moment).
    ``cpu p50``: CPU per request in process (the block's, else the service's). With ``baseline``, a
    second line per kind: the same block requests answered by the baseline's code, alternated with
    these one by one."""
    ok = True
    blocked = any(row[3] for row in rows)
    print(
        f"  {'search':<24}"
        + (f"{'block p50':>10}{'block p95':>10}" if blocked else "")
        + f"{'cpu p50':>9}{'service p50':>12}{'service p95':>12}{'naive p50':>11}{'naive p95':>11}"
        f"{'ratio p50':>10}{'ratio p95':>10}{'matches':>10}  queries (matches of the first)"
    )
    for label, service_times, naive_times, block_times, cpu, base, total, estimated, example in rows:
        p95 = percentile(service_times, 95)
        ok &= target is None or percentile(block_times or service_times, 95) <= target
        block = (
            f"{percentile(block_times, 50):>8.1f}ms{percentile(block_times, 95):>8.1f}ms"
            if block_times
            else (f"{'-':>10}{'-':>10}" if blocked else "")
        )
        naive = (
            f"{percentile(naive_times, 50):>9.1f}ms{percentile(naive_times, 95):>9.1f}ms"
            f"{percentile(service_times, 50) / percentile(naive_times, 50):>9.2f}x"
            f"{p95 / percentile(naive_times, 95):>9.2f}x"
            if naive_times
            else f"{'-':>11}{'-':>11}{'-':>10}{'-':>10}"
        )
        shown_total = f"~{total:,}" if estimated else f"{total:,}"
        print(
            f"  {label:<24}{block}{percentile(cpu, 50):>7.2f}ms"
            f"{percentile(service_times, 50):>10.1f}ms{p95:>10.1f}ms{naive}"
            f"{shown_total:>10}  {example}"
        )
        if base is not None:
            base_times, base_cpu = base
            print(
                f"  {'  ' + (baseline or 'baseline') + ', alternated':<24}"
                f"{percentile(base_times, 50):>8.1f}ms{percentile(base_times, 95):>8.1f}ms"
                f"{percentile(base_cpu, 50):>7.2f}ms   (block p50 / p95 of this code over the baseline's: "
                f"{percentile(block_times, 50) / percentile(base_times, 50):.2f}x / "
                f"{percentile(block_times, 95) / percentile(base_times, 95):.2f}x)"
            )
    return ok


def with_cpu(fn, cpu: list[float]):
    """``fn``, each call's CPU of the calling thread (ms) appended to ``cpu``: the app runs in process,
    so its Python, SQLAlchemy and the driver (not the database's)."""

    def call(sample):
        started = time.thread_time()
        try:
            return fn(sample)
        finally:
            cpu.append((time.thread_time() - started) * 1000)

    return call


def load_baseline(revision: str):
    """``vigil_customer.search`` as it is at git ``revision`` (e.g. ``main``), loaded beside this one as
    ``vigil_customer.search_at_baseline`` (its own kept statements): the same service can then answer
    a request with either module's ``list_customers``, request by request."""
    import importlib.util
    import subprocess

    source = subprocess.run(
        ["git", "show", f"{revision}:services/customer/vigil_customer/search.py"],
        cwd=Path(__file__).resolve().parent,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    spec = importlib.util.spec_from_loader("vigil_customer.search_at_baseline", loader=None)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    module.__package__ = "vigil_customer"
    sys.modules[spec.name] = module
    exec(compile(source, f"<{revision}:search.py>", "exec"), module.__dict__)  # noqa: S102 - our own file at a revision
    return module


def as_baseline(baseline, fn):
    """``fn`` run with the service answering through ``baseline``'s ``list_customers``."""

    def call(sample):
        own = search.list_customers
        search.list_customers = baseline.list_customers
        try:
            return fn(sample)
        finally:
            search.list_customers = own

    return call


def measure_searches(get, url: str, runs: int, naive: bool, block: bool = False, baseline=None) -> list[tuple]:
    """Page 1 of each kind of search. With ``naive``, each service request is paired with the naive SQL
    (interleaved, :func:`timed_pair`): the ratios. With ``block`` too, the same searches again as
    ``runs`` service requests one after another (after the pairs): the p95 a session sees, whose
    statements are not interleaved with naive ones that pass hundreds of MB of heap through
    shared_buffers (see docs/performance.md: they evict the match index's pages between two searches).
    With ``baseline`` (:func:`load_baseline`), the block's requests alternate with the same requests
    answered by the baseline's code (same sample, alternating which goes first), after checking that
    both answer each sample with the same body. Each block request's CPU in process is kept too."""
    picks = samples_from(url)
    rows = []
    engine = create_engine(url) if naive else None
    for label, values in picks.items():
        values = [v for v in values if v]
        service = lambda q: get("/api/v1/customers", q=q)  # noqa: E731
        naive_times: list[float] = []
        block_times: list[float] = []
        cpu: list[float] = []
        base: tuple[list[float], list[float]] | None = None
        if engine is not None:  # interleaved request by request: both on the same machine
            with engine.connect() as conn:
                # B023: the lambda is called at once, inside this iteration
                naive = lambda v: naive_query(conn, naive_kind(label), v)  # noqa: B023, E731
                service_times, naive_times = timed_pair(service, naive, values, runs)
            if block and baseline is not None:
                previous = as_baseline(baseline, service)
                for value in values:
                    assert service(value) == previous(value), (label, value, "answered otherwise by the baseline")
                base_cpu: list[float] = []
                block_times, base_times = timed_pair(with_cpu(service, cpu), with_cpu(previous, base_cpu), values, runs)
                base = (base_times, base_cpu[-runs:])
            elif block:
                block_times, _ = timed(with_cpu(service, cpu), values, runs)
        else:
            service_times, _ = timed(with_cpu(service, cpu), values, runs)
        first = get("/api/v1/customers", q=values[0])
        example = f"{values[0]!r}" + (f" and {len(values) - 1} more" if len(values) > 1 else "")
        rows.append(
            (
                label,
                service_times,
                naive_times,
                block_times,
                cpu[-runs:],
                base,
                first["total"],
                first["total_estimated"],
                example,
            )
        )
    if engine is not None:
        engine.dispose()
    return rows


def floor_page_client(url: str):
    """The floor of page 1 without ``q``: a bare Flask app (no identity, no permissions, no ORM, no
    schema, no count) answering the same twenty list items from the same database as JSON: one
    keyset query on the covering index, the rows' listed columns, ``jsonify``."""
    engine = create_engine(url, pool_size=2)
    page = (
        select(*search._LISTED)  # plain columns on a Core connection: no ORM objects
        .where(Customer.location_id.in_(VISIBLE_LOCATIONS))
        .order_by(Customer.sort_name, Customer.id)
        .limit(21)
    )
    app = Flask("floor")

    @app.get("/page")
    def first_page():
        with engine.connect() as conn:
            rows = conn.execute(page).mappings().all()
        items = [{k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in row.items()} for row in rows[:20]]
        return jsonify({"items": items, "page": 1, "per_page": 20})

    client = app.test_client()
    return engine, lambda: client.get("/page").json


def cpu_per_call(fn, runs: int, warmup: int = 20) -> list[float]:
    """CPU of the calling thread per call (ms): the app in process, so its Python, SQLAlchemy and the driver."""
    return benchkit.per_call_ms(fn, runs, warmup=warmup, clock=time.thread_time)


def measure_deep(get, url: str, runs: int, depth: int) -> None:
    engine = create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        key = conn.execute(
            text(
                "SELECT sort_name, id FROM customers WHERE location_id IN (1, 2, 4) "
                "ORDER BY sort_name, id OFFSET :depth LIMIT 1"
            ),
            {"depth": depth},
        ).one()
        conn.execute(text("CREATE INDEX IF NOT EXISTS bench_name_order ON customers (last_name, first_name, id)"))
        conn.execute(text("VACUUM ANALYZE customers"))
        raw_times, _ = timed(
            lambda _: conn.execute(
                text("SELECT id FROM customers ORDER BY last_name, first_name, id OFFSET :depth LIMIT 20"),
                {"depth": depth},
            ).all(),
            [0],
            max(5, runs // 5),
            1,
        )
        # dropped again: with it the planner reads the naive name search in name order (seconds), so a
        # later run on a kept database would compare against a slower naive SQL than a fresh load does
        conn.execute(text("DROP INDEX IF EXISTS bench_name_order"))
    engine.dispose()
    page = depth // 20 + 1
    cursor = (
        base64.urlsafe_b64encode(
            json.dumps(
                {"s": "name", "d": "next", "p": page, "k": [key.sort_name, key.id]}, separators=(",", ":")
            ).encode()
        )
        .decode()
        .rstrip("=")
    )
    first_times, _ = timed(lambda _: get("/api/v1/customers"), [0], runs)
    keyset_times, body = timed(lambda _: get("/api/v1/customers", cursor=cursor), [0], runs)
    numbered = min(page, search.NUMBERED_ROWS // 20)  # the deepest page a bare number reaches
    offset_times, _ = timed(lambda _: get("/api/v1/customers", page=numbered), [0], max(5, runs // 5), 1)
    assert len(body["items"]) == 20 and body["page"] == page
    floor_engine, floor_get = floor_page_client(url)
    assert [i["id"] for i in floor_get()["items"]] == [i["id"] for i in get("/api/v1/customers")["items"]]
    cpu_runs = max(200, runs)
    service_cpu = cpu_per_call(lambda: get("/api/v1/customers"), cpu_runs)
    floor_cpu = cpu_per_call(floor_get, cpu_runs)
    floor_engine.dispose()
    print(
        f"  page 1 (no q), CPU per page in process (signing the identity and parsing the JSON included), "
        f"{cpu_runs} pages: service p50 {percentile(service_cpu, 50):.2f} ms, floor app p50 "
        f"{percentile(floor_cpu, 50):.2f} ms ({percentile(service_cpu, 50) / percentile(floor_cpu, 50):.2f}x; "
        f"target: the service at most 5 ms)"
    )
    print(
        f"  page 1 (no q) through the service       p50 {percentile(first_times, 50):6.1f} ms   "
        f"p95 {percentile(first_times, 95):6.1f} ms"
    )
    print(
        f"  page {page:,} by keyset cursor (service)   p50 {percentile(keyset_times, 50):6.1f} ms   "
        f"p95 {percentile(keyset_times, 95):6.1f} ms"
    )
    print(
        f"  page {numbered:,} by page number (service)   p50 {percentile(offset_times, 50):6.1f} ms   "
        f"p95 {percentile(offset_times, 95):6.1f} ms"
    )
    if numbered < page:
        print(
            f"  page {page:,} by page number: 422, pointing at the cursor "
            f"(numbers reach {search.NUMBERED_ROWS:,} records)"
        )
    print(
        f"  raw SQL OFFSET {depth:,} (index only)     p50 {percentile(raw_times, 50):6.1f} ms   "
        f"p95 {percentile(raw_times, 95):6.1f} ms"
    )


# --- the two runs ---------------------------------------------------------------------------------


def run_postgres(args) -> bool:
    admin = args.postgres_url or postgres_admin_url()
    reuse = args.database is not None
    name = args.database or f"vigil_bench_{uuid.uuid4().hex[:8]}"
    admin_engine = create_engine(admin, isolation_level="AUTOCOMMIT")
    if not reuse:
        with admin_engine.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(admin).set(database=name).render_as_string(hide_password=False)
    print(f"\nPostgreSQL: {args.customers:,} customers in database {name}", flush=True)
    try:
        started = time.perf_counter()
        migrations.upgrade("vigil_customer", url)
        if reuse:
            print("  reusing the kept database (migrated to head)", flush=True)
        else:
            pg_load(url, args.customers)
        check_terms(url)
        print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
        with create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
            started = time.perf_counter()
            conn.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
            conn.execute(text("SET maintenance_work_mem = '512MB'"))
            for statement in NAIVE_INDEXES:
                conn.execute(text(statement.replace("CREATE INDEX", "CREATE INDEX IF NOT EXISTS")))
            conn.execute(text("DROP INDEX IF EXISTS bench_name_order"))  # left by an older run: see measure_deep
            conn.execute(text("ANALYZE customers"))
            conn.execute(text("ANALYZE property_accounts"))
            print(f"  trigram indexes for the naive queries built in {time.perf_counter() - started:.0f} s")
        with tempfile.TemporaryDirectory() as var_dir:
            _, get = service_client(url, var_dir, args.account_view)
            print(f"  the bench user holds properties.view in {args.account_view} of the locations it sees")
            block = args.order == "both"
            baseline = load_baseline(args.baseline) if args.baseline and block else None
            print(
                f"\n  page 1, {args.runs} requests per search through the service (target p95 <= 30 ms"
                + (", checked on the block" if block else "")
                + "), interleaved with the naive SQL"
                + (f", then {args.runs} in a block" if block else "")
                + (f" alternated with the same requests answered by {args.baseline}'s search.py" if baseline else "")
                + f" (load average {' / '.join(f'{v:.1f}' for v in os.getloadavg())}):"
            )
            rows = measure_searches(get, url, args.runs, naive=True, block=block, baseline=baseline)
            ok = report(rows, 30.0, args.baseline)
            print(f"  load average after: {' / '.join(f'{v:.1f}' for v in os.getloadavg())}")
            if not args.searches_only:
                print("\n  deep pages:")
                measure_deep(get, url, args.runs, min(500_000, int(args.customers * 0.55)))
        return ok
    finally:
        if not args.keep and not reuse:
            with admin_engine.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            print(f"  kept database {name}")
        admin_engine.dispose()


def run_sqlite(args) -> bool:
    with tempfile.TemporaryDirectory() as directory:
        url = f"sqlite:///{Path(directory) / 'customer.db'}"
        print(f"\nSQLite: {args.sqlite_customers:,} customers", flush=True)
        started = time.perf_counter()
        migrations.upgrade("vigil_customer", url)
        sqlite_load(url, args.sqlite_customers)
        print(f"  loaded in {time.perf_counter() - started:.0f} s", flush=True)
        _, get = service_client(url, directory)
        print(f"\n  page 1, {args.runs} requests per search through the service (target p95 <= 100 ms):")
        return report(measure_searches(get, url, args.runs, naive=False), 100.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000, help="PostgreSQL customers (default 1,000,000)")
    parser.add_argument("--sqlite-customers", type=int, default=100_000, help="SQLite customers (default 100,000)")
    parser.add_argument("--runs", type=int, default=60, help="timed requests per kind of search")
    parser.add_argument("--postgres-url", help="admin URL (default: VIGIL_TEST_POSTGRES_URL or local postgres)")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--keep", action="store_true", help="keep the PostgreSQL database afterwards")
    parser.add_argument("--searches-only", action="store_true", help="page 1 of the searches only, no deep pages")
    parser.add_argument(
        "--order",
        choices=("both", "interleaved"),
        default="both",
        help="both (default): service and naive interleaved (the ratios), then a block of service requests "
        "(the p95 target); interleaved: the pairs only, the p95 target checked on them",
    )
    parser.add_argument("--database", help="measure a database kept by an earlier --keep run (no load; kept)")
    parser.add_argument(
        "--baseline",
        metavar="REV",
        help="also answer the block's requests with search.py as at git revision REV (e.g. main), "
        "alternated with this code's one by one, each sample checked to answer the same",
    )
    parser.add_argument(
        "--account-view",
        choices=("all", "some", "none"),
        default="all",
        help="where the bench user holds properties.view among the locations it sees (PostgreSQL): all "
        "(default), some (two of three: the account terms' condition on every search), none",
    )
    args = parser.parse_args(argv)
    if args.account_view != "all" and args.baseline:
        parser.error("--baseline compares answers, which differ from a baseline without account conditions")
    results = []
    if not args.skip_postgres:
        results.append(("PostgreSQL", run_postgres(args)))
    if not args.skip_sqlite:
        results.append(("SQLite", run_sqlite(args)))
    print()
    for name, ok in results:
        print(f"{name}: {'every p95 within target' if ok else 'SOME p95 ABOVE TARGET'}")
    return 0 if all(ok for _, ok in results) else 1


if __name__ == "__main__":
    sys.exit(main())
