"""the central station a property is linked to (set by the first message from it; the customer's
Monitored By is locked while one is)"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    with op.batch_alter_table("properties") as batch:
        batch.add_column(sa.Column("central_station", sa.String(120), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("properties") as batch:
        batch.drop_column("central_station")
