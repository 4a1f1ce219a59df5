"""versions (ETags) of users, roles, locations and API keys; the gateway's idempotency keys"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.migrations import create_idempotency_table, drop_idempotency_table

revision = "0004"
down_revision = "0003"

VERSIONED = ("users", "roles", "locations", "api_keys")


def upgrade() -> None:
    for table in VERSIONED:
        op.add_column(table, sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
    create_idempotency_table(op)


def downgrade() -> None:
    drop_idempotency_table(op)
    for table in VERSIONED:
        with op.batch_alter_table(table) as batch:
            batch.drop_column("version")
