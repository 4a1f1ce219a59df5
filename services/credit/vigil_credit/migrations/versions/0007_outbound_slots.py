"""the concurrency cap on ADT and bureau calls shared by every credit worker; when a PreCheck began to run"""

import sqlalchemy as sa
from alembic import op

import vigil_shared.db

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    op.create_table(
        "outbound_slots",
        sa.Column("name", sa.String(length=40), nullable=False),
        sa.Column("slot", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("holder", sa.String(length=100), nullable=True),
        sa.Column("expires_at", vigil_shared.db.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("name", "slot", name=op.f("pk_outbound_slots")),
    )
    with op.batch_alter_table("prechecks") as batch:
        batch.add_column(sa.Column("started_at", vigil_shared.db.UTCDateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("prechecks") as batch:
        batch.drop_column("started_at")
    op.drop_table("outbound_slots")
