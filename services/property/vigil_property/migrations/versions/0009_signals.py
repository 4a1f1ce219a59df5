"""signals: what central stations send about accounts (signals and account statuses), matched or not"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    op.create_table(
        "signals",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("property_id", sa.Integer(), nullable=True),
        sa.Column("account_number", sa.String(40), nullable=False),
        sa.Column("account_key", sa.String(40), nullable=False),
        sa.Column("central_station", sa.String(120), nullable=False),
        sa.Column("message_id", sa.String(100), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=True),
        sa.Column("zone", sa.String(40), nullable=True),
        sa.Column("panel_user", sa.String(40), nullable=True),
        sa.Column("description", sa.String(300), nullable=True),
        sa.Column("occurred_at", UTCDateTime(), nullable=False),
        sa.Column("received_at", UTCDateTime(), nullable=False),
        sa.Column("resolved_at", UTCDateTime(), nullable=True),
        sa.Column("resolved_by", sa.String(150), nullable=True),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_signals_property", "signals", ["property_id", "occurred_at"])
    op.create_index("ix_signals_unmatched", "signals", ["property_id", "resolved_at"])
    op.create_index("ix_signals_account_key", "signals", ["account_key"])


def downgrade() -> None:
    op.drop_table("signals")
