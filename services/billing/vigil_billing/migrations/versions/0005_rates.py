"""the MMR rate catalog and the rate assigned to each customer, with its contract term"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "rates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(100), nullable=True),
        sa.Column("total", sa.BigInteger(), nullable=False),
        sa.Column("items", sa.JSON(), nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_rates"),
    )
    op.create_table(
        "rate_assignments",
        sa.Column("customer_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("rate_id", sa.Integer(), nullable=False),
        sa.Column("a_la_carte", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("contract_term_months", sa.Integer(), nullable=True),
        sa.Column("contract_start", sa.Date(), nullable=True),
        sa.Column("assigned_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_rate_assignments"),
        sa.ForeignKeyConstraint(["rate_id"], ["rates.id"], name="fk_rate_assignments_rate_id_rates"),
    )
    op.create_index("ix_rate_assignments_rate_id", "rate_assignments", ["rate_id"])


def downgrade() -> None:
    op.drop_index("ix_rate_assignments_rate_id", table_name="rate_assignments")
    op.drop_table("rate_assignments")
    op.drop_table("rates")
