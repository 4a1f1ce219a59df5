"""appointments at properties"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    op.create_table(
        "appointments",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("property_id", sa.Integer(), nullable=False),
        sa.Column("type", sa.String(20), nullable=False),
        sa.Column("starts_at", UTCDateTime(), nullable=False),
        sa.Column("ends_at", UTCDateTime(), nullable=False),
        sa.Column("technician_id", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("cancel_reason", sa.String(500), nullable=True),
        sa.Column("cancelled_at", UTCDateTime(), nullable=True),
        sa.Column("cancelled_by", sa.String(150), nullable=True),
        sa.Column("completed_at", UTCDateTime(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("row_version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_appointments"),
        sa.ForeignKeyConstraint(
            ["property_id"], ["properties.id"], ondelete="CASCADE", name="fk_appointments_property_id_properties"
        ),
    )
    op.create_index("ix_appointments_property_id", "appointments", ["property_id"])
    op.create_index("ix_appointments_technician_id_starts_at", "appointments", ["technician_id", "starts_at"])


def downgrade() -> None:
    op.drop_index("ix_appointments_technician_id_starts_at", table_name="appointments")
    op.drop_index("ix_appointments_property_id", table_name="appointments")
    op.drop_table("appointments")
