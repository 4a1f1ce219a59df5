"""known customers (the replica of customer events) and the company's billing settings"""

from alembic import op

from vigil_shared.schema_spec import create_tables, drop_tables

revision = "0004"
down_revision = "0003"


def upgrade() -> None:
    create_tables(
        op,
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
    """,
    )


def downgrade() -> None:
    drop_tables(op, "billing_settings known_customers")
