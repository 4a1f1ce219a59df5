"""ADT PreChecks of customers (at create and refreshed), their answers encrypted"""

from vigil_shared.schema_spec import tables_migration

revision = "0005"
down_revision = "0004"


upgrade, downgrade = tables_migration(
    """
        table prechecks sqlite_autoincrement
          id, customer_id    int
          status, trigger    str(20)
          reference          str(100)  null
          reasons            json
          error              str(500)  null
          response_enc       text      null
          attempts           int
          requested_by_name  str(150)  null
          created_at         datetime
          completed_at       datetime  null
          pk_prechecks: primary key (id)
          ix_prechecks_customer_id: index (customer_id)
    """
)
