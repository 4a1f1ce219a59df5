"""credit checks (pulls and manual scores) and the company's credit settings"""

import sqlalchemy as sa
from alembic import op

import vigil_shared.db

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "credit_checks",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("bureau", sa.String(length=20), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("request_enc", sa.Text(), nullable=True),
        sa.Column("score", sa.Integer(), nullable=True),
        sa.Column("grade", sa.String(length=10), nullable=True),
        sa.Column("transaction_id", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("response_enc", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("requested_by", sa.String(length=100), nullable=True),
        sa.Column("requested_by_name", sa.String(length=150), nullable=True),
        sa.Column("request_id", sa.String(length=64), nullable=True),
        sa.Column("applied", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("applied_at", vigil_shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("applied_by", sa.String(length=150), nullable=True),
        sa.Column("skipped_at", vigil_shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("created_at", vigil_shared.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column("run_at", vigil_shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_checks")),
        sqlite_autoincrement=True,
    )
    with op.batch_alter_table("credit_checks", schema=None) as batch_op:
        batch_op.create_index("ix_credit_checks_customer", ["customer_id", "bureau", "created_at"], unique=False)

    op.create_table(
        "credit_settings",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("repeat_days", sa.Integer(), nullable=False),
        sa.Column("grade_bands", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_credit_settings")),
        sqlite_autoincrement=True,
    )


def downgrade() -> None:
    op.drop_table("credit_settings")
    with op.batch_alter_table("credit_checks", schema=None) as batch_op:
        batch_op.drop_index("ix_credit_checks_customer")

    op.drop_table("credit_checks")
