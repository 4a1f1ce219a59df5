"""archive operations: the operations table (``vigil_shared.operations``) and which operation archived a customer"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.operations import create_operations_tables, drop_operations_tables

revision = "0007"
down_revision = "0006"


def upgrade() -> None:
    create_operations_tables(op)
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("archive_operation_id", sa.String(48), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("archive_operation_id")
    drop_operations_tables(op)
