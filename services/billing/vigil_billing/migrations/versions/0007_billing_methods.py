"""billing methods: processor tokens with brand, last four, expiry and holder (never a card number)"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "billing_methods",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("token", sa.String(100), nullable=False),
        sa.Column("brand", sa.String(30), nullable=True),
        sa.Column("last4", sa.String(4), nullable=False),
        sa.Column("exp_month", sa.Integer(), nullable=True),
        sa.Column("exp_year", sa.Integer(), nullable=True),
        sa.Column("holder", sa.String(100), nullable=True),
        sa.Column("is_default", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_billing_methods"),
        sa.UniqueConstraint("token", name="uq_billing_methods_token"),
    )
    op.create_index("ix_billing_methods_customer_id", "billing_methods", ["customer_id"])


def downgrade() -> None:
    op.drop_index("ix_billing_methods_customer_id", table_name="billing_methods")
    op.drop_table("billing_methods")
