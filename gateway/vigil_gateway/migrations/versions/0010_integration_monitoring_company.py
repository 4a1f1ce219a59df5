"""the monitoring company a central-station integration is bound to: its messages reach only the
properties that station monitors"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"


def upgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.add_column(sa.Column("monitoring_company_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("integrations") as batch:
        batch.drop_column("monitoring_company_id")
