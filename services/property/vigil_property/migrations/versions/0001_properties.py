"""properties, known customers, outbox and inbox"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime
from vigil_shared.migrations import create_messaging_tables, drop_messaging_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    op.create_table(
        "properties",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("account_number", sa.String(40), nullable=True),
        sa.Column("address", sa.String(200), nullable=True),
        sa.Column("city", sa.String(100), nullable=True),
        sa.Column("postal_code", sa.String(20), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_properties"),
        sa.UniqueConstraint("account_number", name="uq_properties_account_number"),
    )
    op.create_index("ix_properties_customer_id", "properties", ["customer_id"])
    op.create_table(
        "known_customers",
        sa.Column("customer_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_known_customers"),
    )
    create_messaging_tables(op)


def downgrade() -> None:
    drop_messaging_tables(op)
    op.drop_table("known_customers")
    op.drop_index("ix_properties_customer_id", table_name="properties")
    op.drop_table("properties")
