"""recurring invoices and scheduled payments"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "recurring_invoices",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("bill_to_customer_id", sa.Integer(), nullable=False),
        sa.Column("lines", sa.JSON(), nullable=False),
        sa.Column("memo", sa.String(500), nullable=True),
        sa.Column("interval_months", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("next_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("remaining", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_recurring_invoices"),
    )
    op.create_index("ix_recurring_invoices_customer_id", "recurring_invoices", ["customer_id"])
    op.create_index("ix_recurring_invoices_bill_to_customer_id", "recurring_invoices", ["bill_to_customer_id"])
    op.create_index("ix_recurring_invoices_next_date", "recurring_invoices", ["next_date"])
    op.create_table(
        "scheduled_payments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("billing_method_id", sa.Integer(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("due_date", sa.Date(), nullable=False),
        sa.Column("next_attempt_on", sa.Date(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("payment_id", sa.Integer(), nullable=True),
        sa.Column("failure_code", sa.String(60), nullable=True),
        sa.Column("failure_message", sa.String(200), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_scheduled_payments"),
    )
    op.create_index("ix_scheduled_payments_customer_id", "scheduled_payments", ["customer_id"])
    op.create_index("ix_scheduled_payments_next_attempt_on", "scheduled_payments", ["next_attempt_on"])


def downgrade() -> None:
    op.drop_index("ix_scheduled_payments_next_attempt_on", table_name="scheduled_payments")
    op.drop_index("ix_scheduled_payments_customer_id", table_name="scheduled_payments")
    op.drop_table("scheduled_payments")
    op.drop_index("ix_recurring_invoices_next_date", table_name="recurring_invoices")
    op.drop_index("ix_recurring_invoices_bill_to_customer_id", table_name="recurring_invoices")
    op.drop_index("ix_recurring_invoices_customer_id", table_name="recurring_invoices")
    op.drop_table("recurring_invoices")
