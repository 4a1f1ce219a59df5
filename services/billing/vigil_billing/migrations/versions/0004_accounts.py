"""known customers (the replica of customer events) and the company's billing settings"""

from vigil_shared.schema_spec import tables_migration

revision = "0004"
down_revision = "0003"


upgrade, downgrade = tables_migration(
    """
        table known_customers
          customer_id     int       noautoinc
          deleted         bool      default=false
          location_id     int       null
          location_as_of  datetime  null
          kind            str(20)   null
          parent_id       int       null
          archived        bool      default=false
          updated_at      datetime
          pk_known_customers: primary key (customer_id)
          ix_known_customers_parent_id: index (parent_id)
        table billing_settings
          id                               int       noautoinc
          currency                         str(3)
          tax_rate_bp, payment_terms_days  int
          mmr_breakout                     bool
          mmr_items                        json
          updated_at                       datetime
          version                          int
          pk_billing_settings: primary key (id)
    """
)
