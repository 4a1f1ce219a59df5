"""customers, outbox and inbox"""

from alembic import op

from vigil_shared.migrations import create_messaging_tables, drop_messaging_tables
from vigil_shared.schema_spec import create_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_tables(
        op,
        """
        table customers
          id                      int       pk
          first_name, last_name   str(100)
          email, email_key        str(254)  null
          phone                   str(40)   null
          notes                   text      null
          active                  bool
          created_at, updated_at  datetime
          version                 int
          pk_customers: primary key (id)
          uq_customers_email_key: unique (email_key)
    """,
    )
    create_messaging_tables(op)


def downgrade() -> None:
    drop_messaging_tables(op)
    op.drop_table("customers")
