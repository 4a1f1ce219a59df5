"""API keys remember the key they were made with

A key made with a key answers to that key as well as to the person: it stops when the key it was
made with is revoked or expires, so a short-lived key cannot mint a lasting one. Keys are never
deleted (a revoked key stays listed), so the column needs no foreign key.
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"


def upgrade() -> None:
    op.add_column("api_keys", sa.Column("made_with_key_id", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("made_with_key_id")
