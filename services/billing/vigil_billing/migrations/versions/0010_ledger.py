"""the ledger: one row per posting (keyset-ordered per account) and each account's running total

Backfilled from what is already there (the same entries the transactions list used to compute).
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    op.create_table(
        "ledger_entries",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(10), nullable=False),
        sa.Column("rank", sa.SmallInteger(), nullable=False),
        sa.Column("ref_id", sa.Integer(), nullable=False),
        sa.Column("day", sa.Date(), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_ledger_entries"),
    )
    op.create_index("ix_ledger_entries_account_order", "ledger_entries", ["account_id", "day", "rank", "ref_id"])
    op.create_index("uq_ledger_entries_kind_ref", "ledger_entries", ["kind", "ref_id"], unique=True)
    op.create_index("ix_ledger_entries_customer_id", "ledger_entries", ["customer_id"])
    op.create_table(
        "ledger_accounts",
        sa.Column("customer_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False),
        sa.Column("entries", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("customer_id", name="pk_ledger_accounts"),
    )
    day = "CAST({} AS DATE)" if op.get_bind().dialect.name == "postgresql" else "date({})"
    op.execute(
        "INSERT INTO ledger_entries (account_id, customer_id, kind, rank, ref_id, day, number, amount)"
        " SELECT bill_to_customer_id, customer_id, 'invoice', 1, id, issue_date, number, total"
        " FROM invoices WHERE issue_date IS NOT NULL"
        " UNION ALL SELECT bill_to_customer_id, customer_id, 'void', 2, id, "
        + day.format("voided_at")
        + ", number, -total FROM invoices WHERE status = 'void' AND issue_date IS NOT NULL"
        " UNION ALL SELECT customer_id, customer_id, 'payment', 3, id, "
        + day.format("received_at")
        + ", NULL, -amount FROM payments WHERE status = 'succeeded'"
        " UNION ALL SELECT p.customer_id, p.customer_id, 'refund', 4, r.id, "
        + day.format("r.created_at")
        + ", r.payment_id, r.amount FROM refunds r JOIN payments p ON p.id = r.payment_id"
    )
    op.execute(
        "INSERT INTO ledger_accounts (customer_id, balance, entries)"
        " SELECT account_id, SUM(amount), COUNT(*) FROM ledger_entries GROUP BY account_id"
    )


def downgrade() -> None:
    op.drop_table("ledger_accounts")
    op.drop_index("ix_ledger_entries_customer_id", table_name="ledger_entries")
    op.drop_index("uq_ledger_entries_kind_ref", table_name="ledger_entries")
    op.drop_index("ix_ledger_entries_account_order", table_name="ledger_entries")
    op.drop_table("ledger_entries")
