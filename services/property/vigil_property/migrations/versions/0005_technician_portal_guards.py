"""technician portal: wrong-PIN lockout per property, attempt windows per client"""

from vigil_shared.schema_spec import tables_migration

revision = "0005"
down_revision = "0004"


upgrade, downgrade = tables_migration(
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
    """
)
