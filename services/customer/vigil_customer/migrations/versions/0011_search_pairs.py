"""customer_search_pairs: two terms of a record that letter words can match, keyed by both heads

Why: a search of two common words (``james smith``) joined each word's range of the match index
(18,700 and 11,100 entries at 1,000,000 customers) to find its 126 records, as slow as the naive
trigram SQL; the pair rows of ``jam`` + ``smi`` are a few hundred entries of one index.

Which terms pair (``vigil_customer.search.pairable``): those a search word of four letters or more
(``a``-``z``) can match, i.e. whose first ``max(covered + 1, 4)`` characters are letters (such a word
is the first characters of a term it matches, and longer than its ``covered``). A record's pairs are
every two such terms, ``lo`` < ``hi`` in byte order: it holds two such words exactly when it holds a
pair of terms matching them.

The backfill derives them in SQL from the term table, on PostgreSQL and SQLite alike (the same rows
the service writes: test_migrations checks it). Records written by the old code after the backfill
and before the new code runs would miss their pairs: migrate with the old code stopped (README › Production).
"""

import sqlalchemy as sa
from alembic import op

import vigil_shared.db  # noqa: F401 - keeps autogenerate imports stable

revision = "0011"
down_revision = "0010"

TABLE = "customer_search_pairs"


def _binary(length: int):
    return sa.String(length, collation="C").with_variant(sa.String(length), "sqlite")


def pairable_sql(alias: str, dialect: str) -> str:
    """The SQL of ``search.pairable`` on the term row ``alias``: its first max(covered + 1, 4) characters are a-z."""
    prefix = f"substr({alias}.term, 1, {'greatest' if dialect == 'postgresql' else 'max'}({alias}.covered + 1, 4))"
    letters = f"{prefix} !~ '[^a-z]'" if dialect == "postgresql" else f"{prefix} NOT GLOB '*[^a-z]*'"
    return f"length({alias}.term) >= 4 AND {letters}"


PAIRS_FROM_TERMS = """
    INSERT INTO customer_search_pairs (customer_id, lo, hi, lo_head, hi_head, kind, location_id, sort_name)
    SELECT a.customer_id, a.term, b.term, substr(a.term, 1, 3), substr(b.term, 1, 3), a.kind, a.location_id,
           a.sort_name
    FROM customer_search_terms a JOIN customer_search_terms b ON b.customer_id = a.customer_id AND a.term < b.term
    WHERE {a} AND {b}
"""


def upgrade() -> None:
    op.create_table(
        TABLE,
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("lo", _binary(120), nullable=False),
        sa.Column("hi", _binary(120), nullable=False),
        sa.Column("lo_head", _binary(3), nullable=False),
        sa.Column("hi_head", _binary(3), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("sort_name", _binary(220), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_customer_search_pairs_customer_id_customers"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("customer_id", "lo", "hi", name=op.f("pk_customer_search_pairs")),
    )
    dialect = op.get_bind().dialect.name
    op.execute(PAIRS_FROM_TERMS.format(a=pairable_sql("a", dialect), b=pairable_sql("b", dialect)))
    op.create_index(
        "ix_customer_search_pairs_match",
        TABLE,
        ["lo_head", "hi_head", "lo", "hi", "location_id", "customer_id", "kind", "sort_name"],
    )


def downgrade() -> None:
    op.drop_index("ix_customer_search_pairs_match", table_name=TABLE)
    op.drop_table(TABLE)
