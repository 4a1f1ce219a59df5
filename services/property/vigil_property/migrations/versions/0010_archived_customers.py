"""archived customers: which archive operation cancelled an appointment, and the replica's archived flag"""

import sqlalchemy as sa
from alembic import op

import vigil_shared.db

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("appointments") as batch:
        batch.add_column(sa.Column("cancelled_by_operation", sa.String(48), nullable=True))
        batch.create_index(op.f("ix_appointments_cancelled_by_operation"), ["cancelled_by_operation"], unique=False)
    with op.batch_alter_table("known_customers") as batch:
        batch.add_column(sa.Column("archived", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("archived_as_of", vigil_shared.db.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("known_customers") as batch:
        batch.drop_column("archived_as_of")
        batch.drop_column("archived")
    with op.batch_alter_table("appointments") as batch:
        batch.drop_index(op.f("ix_appointments_cancelled_by_operation"))
        batch.drop_column("cancelled_by_operation")
