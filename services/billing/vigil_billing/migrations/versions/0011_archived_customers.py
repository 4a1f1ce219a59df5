"""archived customers: which archive operation cancelled a recurring invoice or a scheduled payment,
and the replica's archived-as-of moment"""

import sqlalchemy as sa
from alembic import op

import vigil_shared.db

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    for table in ("recurring_invoices", "scheduled_payments"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("cancelled_by_operation", sa.String(48), nullable=True))
            batch.create_index(op.f(f"ix_{table}_cancelled_by_operation"), ["cancelled_by_operation"], unique=False)
    with op.batch_alter_table("known_customers") as batch:
        batch.add_column(sa.Column("archived_as_of", vigil_shared.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("known_customers") as batch:
        batch.drop_column("archived_as_of")
    for table in ("scheduled_payments", "recurring_invoices"):
        with op.batch_alter_table(table) as batch:
            batch.drop_index(op.f(f"ix_{table}_cancelled_by_operation"))
            batch.drop_column("cancelled_by_operation")
