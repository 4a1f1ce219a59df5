"""the customer's Monitored By in the replica: only the central station of that monitoring company
links the customer's unlinked properties with its first message"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"


def upgrade() -> None:
    with op.batch_alter_table("known_customers") as batch:
        batch.add_column(sa.Column("monitoring_company_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("known_customers") as batch:
        batch.drop_column("monitoring_company_id")
