"""finer planner statistics for search terms (PostgreSQL)

A word prefix covers a thin slice of millions of terms; with the default 100 histogram buckets
PostgreSQL guesses a handful of rows for a prefix matching thousands, which skews the totals it
estimates beyond 10,000 and its choice of plans. A thousand buckets fix the guesses.
"""

from alembic import op

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE customer_search_terms ALTER COLUMN term SET STATISTICS 1000")
        op.execute("ALTER TABLE customer_search_terms ALTER COLUMN head SET STATISTICS 1000")
        op.execute("ANALYZE customer_search_terms")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE customer_search_terms ALTER COLUMN term SET STATISTICS -1")
        op.execute("ALTER TABLE customer_search_terms ALTER COLUMN head SET STATISTICS -1")
