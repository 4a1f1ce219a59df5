"""billing methods: processor tokens with brand, last four, expiry and holder (never a card number)"""

from vigil_shared.schema_spec import tables_migration

revision = "0007"
down_revision = "0006"


upgrade, downgrade = tables_migration(
    """
        table billing_methods
          id                   int       pk
          customer_id          int
          kind                 str(10)
          token                str(100)
          brand                str(30)   null
          last4                str(4)
          exp_month, exp_year  int       null
          holder               str(100)  null
          is_default           bool      default=false
          created_at           datetime
          version              int
          pk_billing_methods: primary key (id)
          uq_billing_methods_token: unique (token)
          ix_billing_methods_customer_id: index (customer_id)
    """
)
