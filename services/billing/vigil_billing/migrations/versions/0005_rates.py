"""the MMR rate catalog and the rate assigned to each customer, with its contract term"""

from vigil_shared.schema_spec import tables_migration

revision = "0005"
down_revision = "0004"


upgrade, downgrade = tables_migration(
    """
        table rates
          id                      int       pk
          name                    str(100)  null
          total                   bigint
          items                   json
          active                  bool      default=true
          created_at, updated_at  datetime
          version                 int
          pk_rates: primary key (id)
        table rate_assignments
          customer_id           int       noautoinc
          rate_id               int
          a_la_carte            bool      default=false
          contract_term_months  int       null
          contract_start        date      null
          assigned_at           datetime
          version               int
          pk_rate_assignments: primary key (customer_id)
          fk_rate_assignments_rate_id_rates: foreign key (rate_id) -> rates (id)
          ix_rate_assignments_rate_id: index (rate_id)
    """
)
