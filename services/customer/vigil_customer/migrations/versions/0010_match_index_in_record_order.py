"""the match index keeps a term's entries in record order (customer_id before kind and sort_name)

Why: an index-only scan checks the visibility map page of each entry's heap block. In name order
the entries of one term (``james``) point all over the table, so nearly every entry switched
visibility-map page: 14,411 buffer hits to read 23,000 entries of ``james smith``. In record order
they follow the heap (terms are written record by record): 291. The columns are the same (an
index of the same size); ``kind`` and ``sort_name`` stay in it so searches still read it alone.
Nothing read the old order: a search's ``covered IN (…)`` already made its output unordered.

On PostgreSQL the new index is built ``CONCURRENTLY`` beside the old one, then swapped in, so a large
install keeps writing customers while it is built (a plain rebuild would hold their search terms'
writes for the whole build); a build that failed half way leaves an invalid index, dropped on retry.
"""

from alembic import op

revision = "0010"
down_revision = "0009"

OLD = ["covered", "term", "location_id", "kind", "sort_name", "customer_id"]
NEW = ["covered", "term", "location_id", "customer_id", "kind", "sort_name"]


NAME, TABLE = "ix_customer_search_terms_match", "customer_search_terms"


def _rebuild(columns: list[str]) -> None:
    if op.get_bind().dialect.name != "postgresql":
        op.drop_index(NAME, table_name=TABLE)
        op.create_index(NAME, TABLE, columns)
        return
    building = f"{NAME}_building"
    with op.get_context().autocommit_block():  # CONCURRENTLY runs outside a transaction
        op.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {building}")
        op.create_index(building, TABLE, columns, postgresql_concurrently=True)
        op.drop_index(NAME, table_name=TABLE, postgresql_concurrently=True)
        op.execute(f"ALTER INDEX {building} RENAME TO {NAME}")


def upgrade() -> None:
    _rebuild(NEW)


def downgrade() -> None:
    _rebuild(OLD)
