"""a monitoring company may require a dealer number for the ADT PreCheck; the property replica
records which central station each property is linked to (Monitored By is locked while one is)"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    with op.batch_alter_table("monitoring_companies") as batch:
        batch.add_column(sa.Column("requires_dealer_number", sa.Boolean(), server_default=sa.false(), nullable=False))
    with op.batch_alter_table("property_accounts") as batch:
        batch.add_column(sa.Column("central_station", sa.String(120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("property_accounts") as batch:
        batch.drop_column("central_station")
    with op.batch_alter_table("monitoring_companies") as batch:
        batch.drop_column("requires_dealer_number")
