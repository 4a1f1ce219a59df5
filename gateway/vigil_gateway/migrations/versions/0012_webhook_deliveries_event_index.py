"""no index on a webhook delivery's event id alone: nothing reads the deliveries by it (a replay looks
up (subscription, event), which ``uq_webhook_deliveries_event`` serves), and each delivery's four row
versions (made, taken, claimed, answered) each wrote an entry into it"""

from alembic import op

revision = "0012"
down_revision = "0011"


def upgrade() -> None:
    op.drop_index("ix_webhook_deliveries_event_id", table_name="webhook_deliveries")


def downgrade() -> None:
    op.create_index("ix_webhook_deliveries_event_id", "webhook_deliveries", ["event_id"])
