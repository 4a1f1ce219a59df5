"""outbox positions never reused on SQLite

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01

Without AUTOINCREMENT SQLite gives a new outbox row the position of the newest pruned one.
PostgreSQL: nothing to do, its sequences never go back.
"""
from alembic import op

from vigil_shared.migrations import rebuild_never_reusing_ids

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

TABLES: dict[str, list[str]] = {"outbox_events": []}


def upgrade() -> None:
    rebuild_never_reusing_ids(op, TABLES)


def downgrade() -> None:
    """Nothing to undo: the older code works as well on tables that never reuse an id."""
