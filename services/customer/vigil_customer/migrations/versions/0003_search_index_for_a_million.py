"""the search index for a million records: covered terms, a name-ordered walk, covering sort index

- ``covered``: the length of the longest other term of the same record that is a prefix of the
  term (``john`` covers ``john.smith@example.com``). The match index leads with it, so a search
  word skips the entries that a shorter term of the same record already matches.
- ``head``: the term's first three characters. The walk index keeps the terms sharing a head in
  name order, so a search matching thousands of records reads page 1 in order and stops early.
- ``ix_customers_sort`` carries location and kind, so deep pages by number read the index only.
"""

import sqlalchemy as sa
from alembic import op

import vigil_shared.db  # noqa: F401 - keeps autogenerate imports stable

revision = "0003"
down_revision = "0002"

LOOKUP_COLUMNS = ["term", "location_id", "kind", "sort_name", "customer_id"]


def _binary(length: int):
    return sa.String(length, collation="C").with_variant(sa.String(length), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("customer_search_terms") as batch:
        batch.add_column(sa.Column("covered", sa.Integer(), server_default="0", nullable=False))
        batch.add_column(sa.Column("head", _binary(3), server_default="", nullable=False))
        batch.drop_index("ix_customer_search_terms_lookup")
    op.execute("""
        UPDATE customer_search_terms SET head = substr(term, 1, 3), covered = coalesce((
            SELECT max(length(other.term)) FROM customer_search_terms other
            WHERE other.customer_id = customer_search_terms.customer_id AND other.term <> customer_search_terms.term
              AND substr(customer_search_terms.term, 1, length(other.term)) = other.term), 0)
    """)
    op.create_index("ix_customer_search_terms_match", "customer_search_terms", ["covered", *LOOKUP_COLUMNS])
    op.create_index(
        "ix_customer_search_terms_walk",
        "customer_search_terms",
        ["head", "sort_name", "customer_id", "covered", "term", "location_id", "kind"],
    )
    with op.batch_alter_table("customers") as batch:
        batch.drop_index("ix_customers_sort")
        batch.create_index("ix_customers_sort", ["sort_name", "id", "location_id", "kind"])


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_index("ix_customers_sort")
        batch.create_index("ix_customers_sort", ["sort_name", "id"])
    op.drop_index("ix_customer_search_terms_walk", table_name="customer_search_terms")
    op.drop_index("ix_customer_search_terms_match", table_name="customer_search_terms")
    with op.batch_alter_table("customer_search_terms") as batch:
        batch.drop_column("head")
        batch.drop_column("covered")
        batch.create_index("ix_customer_search_terms_lookup", LOOKUP_COLUMNS)
