"""monitoring-company catalog replacing the free-text monitored_by

Each distinct non-empty ``monitored_by`` value (trimmed, compared without case) becomes a company of
the catalog, an ADT one when its name starts with "ADT"; every customer then names its company by id
and the text column goes. PreCheck Order Enabled starts off: an administrator turns it on.
"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.schema_spec import create_tables

revision = "0008"
down_revision = "0007"


def upgrade() -> None:
    create_tables(
        op,
        """
        table monitoring_companies
          id                                      int
          name, name_key                          str(100)
          is_adt, precheck_order_enabled, active  bool
          version                                 int
          pk_monitoring_companies: primary key (id)
          uq_monitoring_companies_name_key: unique (name_key)
    """,
    )
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("monitoring_company_id", sa.Integer(), nullable=True))
        batch.create_index("ix_customers_monitoring_company_id", ["monitoring_company_id"])
    bind = op.get_bind()
    names: dict[str, str] = {}
    for (value,) in bind.execute(sa.text("SELECT DISTINCT monitored_by FROM customers WHERE monitored_by IS NOT NULL")):
        name = value.strip()
        if name:
            names.setdefault(name.lower(), name)
    companies = sa.table(
        "monitoring_companies",
        sa.column("name", sa.String),
        sa.column("name_key", sa.String),
        sa.column("is_adt", sa.Boolean),
        sa.column("precheck_order_enabled", sa.Boolean),
        sa.column("active", sa.Boolean),
        sa.column("version", sa.Integer),
    )
    for key, name in sorted(names.items()):
        bind.execute(
            companies.insert().values(
                name=name,
                name_key=key,
                is_adt=key.startswith("adt"),
                precheck_order_enabled=False,
                active=True,
                version=1,
            )
        )
        company_id = bind.execute(
            sa.text("SELECT id FROM monitoring_companies WHERE name_key = :k"), {"k": key}
        ).scalar()
        bind.execute(
            sa.text("UPDATE customers SET monitoring_company_id = :id WHERE lower(trim(monitored_by)) = :k"),
            {"id": company_id, "k": key},
        )
    with op.batch_alter_table("customers") as batch:
        batch.drop_column("monitored_by")


def downgrade() -> None:
    with op.batch_alter_table("customers") as batch:
        batch.add_column(sa.Column("monitored_by", sa.String(100), nullable=True))
    op.execute(
        "UPDATE customers SET monitored_by = "
        "(SELECT name FROM monitoring_companies WHERE monitoring_companies.id = customers.monitoring_company_id)"
    )
    with op.batch_alter_table("customers") as batch:
        batch.drop_index("ix_customers_monitoring_company_id")
        batch.drop_column("monitoring_company_id")
    op.drop_table("monitoring_companies")
