"""technician portal: wrong-PIN lockout per property, attempt windows per client"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    op.create_table(
        "pin_guards",
        sa.Column("property_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("locked_until", UTCDateTime(), nullable=True),
        sa.Column("last_failure_at", UTCDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("property_id", name="pk_pin_guards"),
        sa.ForeignKeyConstraint(
            ["property_id"], ["properties.id"], ondelete="CASCADE", name="fk_pin_guards_property_id_properties"
        ),
    )
    op.create_table(
        "lookup_windows",
        sa.Column("client", sa.String(100), nullable=False),
        sa.Column("window_start", UTCDateTime(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("client", name="pk_lookup_windows"),
    )


def downgrade() -> None:
    op.drop_table("lookup_windows")
    op.drop_table("pin_guards")
