"""signals: what central stations send about accounts (signals and account statuses), matched or not"""

from alembic import op

from vigil_shared.schema_spec import create_tables

revision = "0009"
down_revision = "0008"


def upgrade() -> None:
    create_tables(
        op,
        """
        table signals sqlite_autoincrement
          id                           int       pk
          property_id                  int       null
          account_number, account_key  str(40)
          central_station              str(120)
          message_id                   str(100)
          kind                         str(20)
          status                       str(20)   null
          zone, panel_user             str(40)   null
          description                  str(300)  null
          occurred_at, received_at     datetime
          resolved_at                  datetime  null
          resolved_by                  str(150)  null
          ix_signals_property: index (property_id, occurred_at)
          ix_signals_unmatched: index (property_id, resolved_at)
          ix_signals_account_key: index (account_key)
    """,
    )


def downgrade() -> None:
    op.drop_table("signals")
