"""property details, PIN, access information, life cycle, history; customer locations in the replica

Existing properties keep the default PIN (0000): their PIN columns stay NULL, which means exactly that.
"""

from typing import Any

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime
from vigil_shared.schema_spec import create_tables, drop_tables_of

revision = "0002"
down_revision = "0001"

TABLES = """
        table property_history
          id, property_id       int
          action                str(30)
          field                 str(50)   null
          old_value, new_value  text      null
          reason                str(500)  null
          actor_id              str(100)  null
          actor_name            str(150)  null
          source                str(20)
          request_id            str(64)   null
          at                    datetime
          pk_property_history: primary key (id)
          fk_property_history_property_id_properties: foreign key (property_id) -> properties (id) on delete CASCADE
          ix_property_history_property_id: index (property_id)
    """

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
    create_tables(op, TABLES)


def downgrade() -> None:
    drop_tables_of(op, TABLES)
    with op.batch_alter_table("known_customers") as batch:
        batch.drop_index("ix_known_customers_location_id")
        batch.drop_column("location_as_of")
        batch.drop_column("location_id")
    with op.batch_alter_table("properties") as batch:
        for name in ("active", "monitoring_status", *reversed([name for name, _ in PROPERTY_COLUMNS])):
            batch.drop_column(name)
