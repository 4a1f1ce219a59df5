"""technician portal: wrong-PIN lockout per property, attempt windows per client"""

from alembic import op

from vigil_shared.schema_spec import create_tables, drop_tables

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    create_tables(
        op,
        """
        table pin_guards
          property_id                    int       noautoinc
          failures                       int
          locked_until, last_failure_at  datetime  null
          pk_pin_guards: primary key (property_id)
          fk_pin_guards_property_id_properties: foreign key (property_id) -> properties (id) on delete CASCADE
        table lookup_windows
          client        str(100)
          window_start  datetime
          attempts      int
          pk_lookup_windows: primary key (client)
    """,
    )


def downgrade() -> None:
    drop_tables(op, "lookup_windows pin_guards")
