"""property details, PIN, access information, life cycle, history; customer locations in the replica

Existing properties keep the default PIN (0000): their PIN columns stay NULL, which means exactly that.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0002"
down_revision = "0001"

PROPERTY_COLUMNS: list[tuple[str, sa.types.TypeEngine[Any]]] = [
    ("pin_salt", sa.String(32)),
    ("pin_hash", sa.String(64)),
    ("pin_encrypted", sa.Text()),
    ("type", sa.String(20)),
    ("system_type", sa.String(200)),
    ("notes", sa.Text()),
    ("access_managed_by", sa.String(20)),
    ("access_name", sa.String(200)),
    ("access_phone", sa.String(40)),
    ("access_email", sa.String(254)),
    ("access_notes", sa.Text()),
    ("deactivated_at", UTCDateTime()),
]


def upgrade() -> None:
    with op.batch_alter_table("properties") as batch:
        for name, type_ in PROPERTY_COLUMNS:
            batch.add_column(sa.Column(name, type_, nullable=True))
        batch.add_column(sa.Column("monitoring_status", sa.String(20), nullable=False, server_default="active"))
        batch.add_column(sa.Column("active", sa.Boolean(), nullable=False, server_default=sa.true()))
    with op.batch_alter_table("known_customers") as batch:
        batch.add_column(sa.Column("location_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("location_as_of", UTCDateTime(), nullable=True))
        batch.create_index("ix_known_customers_location_id", ["location_id"])
    op.create_table(
        "property_history",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("action", sa.String(30), nullable=False),
        sa.Column("field", sa.String(50), nullable=True),
        sa.Column("old_value", sa.Text(), nullable=True),
        sa.Column("new_value", sa.Text(), nullable=True),
        sa.Column("reason", sa.String(500), nullable=True),
        sa.Column("actor_id", sa.String(100), nullable=True),
        sa.Column("actor_name", sa.String(150), nullable=True),
        sa.Column("source", sa.String(20), nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.Column("at", UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_property_history"),
        sa.ForeignKeyConstraint(
            ["property_id"], ["properties.id"], ondelete="CASCADE", name="fk_property_history_property_id_properties"
        ),
    )
    op.create_index("ix_property_history_property_id", "property_history", ["property_id"])


def downgrade() -> None:
    op.drop_index("ix_property_history_property_id", table_name="property_history")
    op.drop_table("property_history")
    with op.batch_alter_table("known_customers") as batch:
        batch.drop_index("ix_known_customers_location_id")
        batch.drop_column("location_as_of")
        batch.drop_column("location_id")
    with op.batch_alter_table("properties") as batch:
        for name in ("active", "monitoring_status", *reversed([name for name, _ in PROPERTY_COLUMNS])):
            batch.drop_column(name)
