"""company setting: re-run the ADT PreCheck when a pre-checked customer's phone, address or SSN changes"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    with op.batch_alter_table("credit_settings") as batch:
        batch.add_column(sa.Column("precheck_rerun_on_change", sa.Boolean(), nullable=False, server_default=sa.false()))


def downgrade() -> None:
    with op.batch_alter_table("credit_settings") as batch:
        batch.drop_column("precheck_rerun_on_change")
