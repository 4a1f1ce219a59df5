"""properties, known customers, outbox and inbox"""

from alembic import op

from vigil_shared.migrations import create_messaging_tables, drop_messaging_tables
from vigil_shared.schema_spec import create_tables, drop_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_tables(
        op,
        """
        table properties
          id                      int       pk
          customer_id             int
          account_number          str(40)   null
          address                 str(200)  null
          city                    str(100)  null
          postal_code             str(20)   null
          created_at, updated_at  datetime
          version                 int
          pk_properties: primary key (id)
          uq_properties_account_number: unique (account_number)
          ix_properties_customer_id: index (customer_id)
        table known_customers
          customer_id  int       noautoinc
          deleted      bool
          updated_at   datetime
          pk_known_customers: primary key (customer_id)
    """,
    )
    create_messaging_tables(op)


def downgrade() -> None:
    drop_messaging_tables(op)
    drop_tables(op, "known_customers properties")
