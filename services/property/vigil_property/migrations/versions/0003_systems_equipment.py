"""system kinds, systems and equipment at properties; history entries name their subject"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0003"
down_revision = "0002"


def _stamps() -> list[sa.Column]:
    return [
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
    ]


def upgrade() -> None:
    with op.batch_alter_table("property_history") as batch:
        batch.add_column(sa.Column("subject", sa.String(50), nullable=True))
    op.create_table(
        "system_kinds",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("manufacturer", sa.String(100), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("fields", sa.JSON(), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name="pk_system_kinds"),
        sa.UniqueConstraint("name", name="uq_system_kinds_name"),
    )
    op.create_table(
        "systems",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("kind_id", sa.Integer(), nullable=False),
        sa.Column("ip_address", sa.String(45), nullable=True),
        sa.Column("port", sa.Integer(), nullable=True),
        sa.Column("username", sa.String(100), nullable=True),
        sa.Column("password_encrypted", sa.Text(), nullable=True),
        sa.Column("version", sa.String(50), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name="pk_systems"),
        sa.ForeignKeyConstraint(
            ["property_id"], ["properties.id"], ondelete="CASCADE", name="fk_systems_property_id_properties"
        ),
        sa.ForeignKeyConstraint(
            ["kind_id"], ["system_kinds.id"], ondelete="RESTRICT", name="fk_systems_kind_id_system_kinds"
        ),
    )
    op.create_index("ix_systems_property_id", "systems", ["property_id"])
    op.create_index("ix_systems_kind_id", "systems", ["kind_id"])
    op.create_table(
        "equipment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("item", sa.String(200), nullable=False),
        sa.Column("zone", sa.String(50), nullable=True),
        sa.Column("serial_number", sa.String(100), nullable=True),
        sa.Column("install_date", sa.Date(), nullable=True),
        sa.Column("warranty_end", sa.Date(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        *_stamps(),
        sa.PrimaryKeyConstraint("id", name="pk_equipment"),
        sa.ForeignKeyConstraint(
            ["property_id"], ["properties.id"], ondelete="CASCADE", name="fk_equipment_property_id_properties"
        ),
    )
    op.create_index("ix_equipment_property_id", "equipment", ["property_id"])


def downgrade() -> None:
    op.drop_index("ix_equipment_property_id", table_name="equipment")
    op.drop_table("equipment")
    op.drop_index("ix_systems_kind_id", table_name="systems")
    op.drop_index("ix_systems_property_id", table_name="systems")
    op.drop_table("systems")
    op.drop_table("system_kinds")
    with op.batch_alter_table("property_history") as batch:
        batch.drop_column("subject")
