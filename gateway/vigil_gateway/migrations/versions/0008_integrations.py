"""Integrations: central stations posting signed signals and account statuses, and the ids they sent"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    op.create_table(
        "integrations",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(120), nullable=False, unique=True),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("previous_secret", sa.Text(), nullable=True),
        sa.Column("previous_secret_until", UTCDateTime(), nullable=True),
        sa.Column("rate_limit_per_minute", sa.Integer(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("accounts_url", sa.String(2000), nullable=True),
        sa.Column("drift_report", sa.JSON(), nullable=True),
        sa.Column("drift_checked_at", UTCDateTime(), nullable=True),
        sa.Column("drift_requested_at", UTCDateTime(), nullable=True),
        sa.Column("drift_error", sa.String(300), nullable=True),
        sa.Column("created_by", sa.Integer(), nullable=True),
        sa.Column("version", sa.Integer(), server_default="1", nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "incoming_messages",
        sa.Column("integration_id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("message_id", sa.String(100), primary_key=True),
        sa.Column("received_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_incoming_messages_received_at", "incoming_messages", ["received_at"])


def downgrade() -> None:
    op.drop_table("incoming_messages")
    op.drop_table("integrations")
