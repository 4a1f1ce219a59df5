"""known customers (the replica of customer events) and the company's billing settings"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "known_customers",
        sa.Column("customer_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("deleted", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("location_id", sa.Integer(), nullable=True),
        sa.Column("location_as_of", UTCDateTime(), nullable=True),
        sa.Column("kind", sa.String(20), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("archived", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_known_customers"),
    )
    op.create_index("ix_known_customers_parent_id", "known_customers", ["parent_id"])
    op.create_table(
        "billing_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tax_rate_bp", sa.Integer(), nullable=False),
        sa.Column("payment_terms_days", sa.Integer(), nullable=False),
        sa.Column("mmr_breakout", sa.Boolean(), nullable=False),
        sa.Column("mmr_items", sa.JSON(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billing_settings"),
    )


def downgrade() -> None:
    op.drop_table("billing_settings")
    op.drop_index("ix_known_customers_parent_id", table_name="known_customers")
    op.drop_table("known_customers")
