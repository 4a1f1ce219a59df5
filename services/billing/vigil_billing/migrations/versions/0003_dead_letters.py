"""dead letters: the events this service's consumer can never apply, kept for operators

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

An event whose handler fails for a reason repeating cannot fix (an unknown contract, invalid data,
a programming error, a violated constraint) is recorded here after one attempt instead of being
retried ten times and dropped. See ``vigil_shared.messaging.dead_letters``.
"""
from alembic import op

from vigil_shared.migrations import create_dead_letters_table, drop_dead_letters_table

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    create_dead_letters_table(op)


def downgrade() -> None:
    drop_dead_letters_table(op)
