"""appointments at properties"""

from vigil_shared.schema_spec import tables_migration

revision = "0004"
down_revision = "0003"


upgrade, downgrade = tables_migration(
    """
        table appointments
          id, property_id         int
          type                    str(20)
          starts_at, ends_at      datetime
          technician_id           int       null
          status                  str(20)
          notes                   text      null
          cancel_reason           str(500)  null
          cancelled_at            datetime  null
          cancelled_by            str(150)  null
          completed_at            datetime  null
          created_at, updated_at  datetime
          row_version             int
          pk_appointments: primary key (id)
          fk_appointments_property_id_properties: foreign key (property_id) -> properties (id) on delete CASCADE
          ix_appointments_property_id: index (property_id)
          ix_appointments_technician_id_starts_at: index (technician_id, starts_at)
    """
)
