"""ADT PreChecks of customers (at create and refreshed), their answers encrypted"""

from alembic import op

from vigil_shared.schema_spec import create_tables, drop_tables

revision = "0005"
down_revision = "0004"


def upgrade() -> None:
    create_tables(
        op,
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
    """,
    )


def downgrade() -> None:
    drop_tables(op, "prechecks")
