"""ADT PreChecks of customers (at create and refreshed), their answers encrypted"""

import sqlalchemy as sa
from alembic import op

import vigil_shared.db

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "prechecks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("trigger", sa.String(length=20), nullable=False),
        sa.Column("reference", sa.String(length=100), nullable=True),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("error", sa.String(length=500), nullable=True),
        sa.Column("response_enc", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("requested_by_name", sa.String(length=150), nullable=True),
        sa.Column("created_at", vigil_shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("completed_at", vigil_shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_prechecks")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("prechecks", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prechecks_customer_id"), ["customer_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("prechecks", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prechecks_customer_id"))

    op.drop_table("prechecks")
