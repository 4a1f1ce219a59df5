"""search terms and pairs carry their source: the record's own fields, or only a property account number

Why: a search matched a property account number (from the replica) for any caller who sees the
record, so a caller without ``properties.view`` at its office could learn which customer holds account
number X by searching for it. A term is now ``source`` 0 (the record's own: names, email, phones,
``#id``) or 1 (only an account number's; a word that is both is the record's own), and a search
matches account terms only where the caller holds ``properties.view`` (``search.Visibility.accounts``).
A pair is 1 when either of its terms is.

``covered`` changes with it: an own term is covered by own terms only (an account term hidden from
the caller must not keep the name from matching), an account term by every other term. The pairs
depend on ``covered`` (``search.pairable``), so the affected records' pairs are derived again, in SQL
on PostgreSQL and SQLite alike, as migration 0011 did (the rows the service writes: test_migrations).

Which terms come from an account number alone is not in the table: it is derived here from the
records holding a live property account (their own fields and account numbers, by frozen copies of
this revision's rules, as migration 0002 did), written to a work table, and the rest is SQL. ``source``
is the last column of the match, walk and pair indexes, so a search still reads them alone; the three
are built again. Migrate with the old code stopped (README › Production): a record it re-indexes in
between would get its account terms as its own. On PostgreSQL both tables are then vacuumed and
analysed, outside the migration's transaction (``vigil_shared.migrations.vacuum_analyze``): most of
their rows were rewritten.
"""

import itertools
import re
import unicodedata

import phonenumbers
import sqlalchemy as sa
from alembic import op

import vigil_shared.db  # noqa: F401 - keeps autogenerate imports stable
from vigil_shared.migrations import vacuum_analyze

revision = "0012"
down_revision = "0011"

TERMS, PAIRS, WORK = "customer_search_terms", "customer_search_pairs", "customer_search_account_terms_work"
MATCH = ["covered", "term", "location_id", "customer_id", "kind", "sort_name"]
WALK = ["head", "sort_name", "customer_id", "covered", "term", "location_id", "kind"]
PAIR = ["lo_head", "hi_head", "lo", "hi", "location_id", "customer_id", "kind", "sort_name"]
INDEXES = (
    ("ix_customer_search_terms_match", TERMS, MATCH),
    ("ix_customer_search_terms_walk", TERMS, WALK),
    ("ix_customer_search_pairs_match", PAIRS, PAIR),
)


def _binary(length: int):
    return sa.String(length, collation="C").with_variant(sa.String(length), "sqlite")


def pairable_sql(alias: str, dialect: str) -> str:
    """The SQL of ``search.pairable`` on the term row ``alias`` (as migration 0011's)."""
    prefix = f"substr({alias}.term, 1, {'greatest' if dialect == 'postgresql' else 'max'}({alias}.covered + 1, 4))"
    letters = f"{prefix} !~ '[^a-z]'" if dialect == "postgresql" else f"{prefix} NOT GLOB '*[^a-z]*'"
    return f"length({alias}.term) >= 4 AND {letters}"


# every two pairable terms of a record, lo < hi, an account pair when either term is one ({where}: which records)
PAIRS_FROM_TERMS = """
    INSERT INTO customer_search_pairs (customer_id, lo, hi, lo_head, hi_head, kind, location_id, sort_name, source)
    SELECT a.customer_id, a.term, b.term, substr(a.term, 1, 3), substr(b.term, 1, 3), a.kind, a.location_id,
           a.sort_name, CASE WHEN a.source > b.source THEN a.source ELSE b.source END
    FROM customer_search_terms a JOIN customer_search_terms b ON b.customer_id = a.customer_id AND a.term < b.term
    WHERE {a} AND {b}{where}
"""

# covered again of the own terms (source 0) of the records in the work table, by the {others} terms
# (an account term's stays: covered by every other term, as before)
COVERED = """
    UPDATE customer_search_terms SET covered = coalesce((
        SELECT max(length(other.term)) FROM customer_search_terms other
        WHERE other.customer_id = customer_search_terms.customer_id AND other.term <> customer_search_terms.term
          AND substr(customer_search_terms.term, 1, length(other.term)) = other.term AND {others}), 0)
    WHERE source = 0 AND customer_id IN (SELECT customer_id FROM {work})
"""

AFFECTED = f"customer_id IN (SELECT customer_id FROM {WORK})"


# --- the terms of a record (frozen copies of this revision's rules, vigil_customer.search) --------------

_WORD_SPLIT = re.compile(r"[^\w'@.+-]+", re.UNICODE)
_PARTS = re.compile(r"[a-z0-9]+")
WORD_FIELDS = ("first_name", "last_name", "business_name", "dba_name")
PHONE_FIELDS = ("primary_phone_e164", "work_phone_e164", "cell_phone_e164", "other_phone_e164")


def _fold(text):
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).lower().strip()


def _word_terms(text) -> set[str]:
    terms: set[str] = set()
    for word in _WORD_SPLIT.split(_fold(text)):
        word = word.strip(".'-+")
        if not word:
            continue
        terms.add(word)
        terms.add(word.replace("'", ""))
        terms.update(part for part in _PARTS.findall(word) if len(part) >= 2 or part.isdigit())
    return terms


def _phone_terms(e164) -> set[str]:
    if not e164:
        return set()
    try:
        digits = phonenumbers.national_significant_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return set()
    if not digits:
        return set()
    return {digits, digits[-7:]} if len(digits) > 7 else {digits}


def own_terms(row) -> set[str]:
    terms = {f"#{row.id}"}
    for name in WORD_FIELDS:
        terms |= _word_terms(getattr(row, name))
    if row.email:
        email = _fold(row.email)
        terms.update({email, email.split("@")[-1]})
    for name in PHONE_FIELDS:
        terms |= _phone_terms(getattr(row, name))
    return {t[:120] for t in terms if t}


def account_terms(numbers) -> set[str]:
    terms: set[str] = set()
    for number in numbers:
        folded = _fold(number)
        if not folded:
            continue
        terms.update({folded, re.sub(r"[^a-z0-9]", "", folded)})
        runs = re.findall(r"\d+", folded)
        if runs:
            terms.add(runs[-1])
    return {t[:120] for t in terms if t}


def _account_only_terms(bind):
    """(customer_id, term) of every term a record holds from an account number alone, record by record."""
    columns = ", ".join(("c.id", *(f"c.{name}" for name in (*WORD_FIELDS, "email", *PHONE_FIELDS))))
    rows = bind.execute(
        sa.text(
            f"SELECT {columns}, p.account_number FROM customers c JOIN property_accounts p ON p.customer_id = c.id"
            " WHERE p.deleted = false AND p.account_number IS NOT NULL ORDER BY c.id"
        ).execution_options(yield_per=5000)
    )
    record, numbers = None, []
    for row in itertools.chain(rows, [None]):
        if record is not None and (row is None or row.id != record.id):
            for term in sorted(account_terms(numbers) - own_terms(record)):
                yield {"customer_id": record.id, "term": term}
            numbers = []
        if row is not None:
            record = row
            numbers.append(row.account_number)


def _pairs_again(dialect: str) -> None:
    """The pairs of the records in the work table, derived again from their terms."""
    op.execute(f"DELETE FROM {PAIRS} WHERE {AFFECTED}")
    where = f" AND a.{AFFECTED}"
    op.execute(PAIRS_FROM_TERMS.format(a=pairable_sql("a", dialect), b=pairable_sql("b", dialect), where=where))


def upgrade() -> None:
    bind = op.get_bind()
    dialect = bind.dialect.name
    for name, table, _ in INDEXES:  # built again below, with the source (and faster to write without)
        op.drop_index(name, table_name=table)
    for table in (TERMS, PAIRS):
        op.add_column(table, sa.Column("source", sa.SmallInteger(), server_default="0", nullable=False))
    work = op.create_table(
        WORK,
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("term", _binary(120), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", "term", name=f"pk_{WORK}"),
    )
    batch: list[dict] = []
    for row in _account_only_terms(bind):
        batch.append(row)
        if len(batch) >= 5000:
            bind.execute(sa.insert(work), batch)
            batch = []
    if batch:
        bind.execute(sa.insert(work), batch)
    op.execute(f"""
        UPDATE {TERMS} SET source = 1 WHERE {AFFECTED} AND EXISTS (
            SELECT 1 FROM {WORK} w WHERE w.customer_id = {TERMS}.customer_id AND w.term = {TERMS}.term)
    """)
    op.execute(COVERED.format(others="other.source = 0", work=WORK))
    _pairs_again(dialect)
    op.drop_table(WORK)
    for name, table, columns in INDEXES:
        op.create_index(name, table, [*columns, "source"])
    vacuum_analyze(op, TERMS, PAIRS)  # most rows rewritten: index-only scans need the visibility map again


def downgrade() -> None:
    # covered and pairs as the old code writes them (by every other term) for the records holding account terms
    op.execute(f"CREATE TABLE {WORK} AS SELECT DISTINCT customer_id FROM {TERMS} WHERE source = 1")
    op.execute(COVERED.format(others="1 = 1", work=WORK))
    _pairs_again(op.get_bind().dialect.name)
    op.drop_table(WORK)
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
    for table in (TERMS, PAIRS):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("source")
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    vacuum_analyze(op, TERMS, PAIRS)
