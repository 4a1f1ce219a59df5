"""signals: one row per (central station, message id), so the gateway can send a batch again"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"


def upgrade() -> None:
    # A repeat could only come from a station re-using an id after its integration was re-created:
    # it is kept (a signal is never dropped) under its id suffixed with its row id.
    signals = sa.table(
        "signals", sa.column("id", sa.Integer), sa.column("central_station"), sa.column("message_id", sa.String)
    )
    first = sa.select(sa.func.min(signals.c.id)).group_by(signals.c.central_station, signals.c.message_id)
    op.execute(
        signals.update()
        .where(signals.c.id.not_in(first))
        .values(message_id=sa.func.substr(signals.c.message_id, 1, 80) + "#" + sa.cast(signals.c.id, sa.String))
    )
    op.create_index("ux_signals_message", "signals", ["central_station", "message_id"], unique=True)


def downgrade() -> None:
    op.drop_index("ux_signals_message", table_name="signals")
