"""system kinds, systems and equipment at properties; history entries name their subject"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.schema_spec import create_tables, drop_tables_of

revision = "0003"
down_revision = "0002"


TABLES = """
        table system_kinds
          id                      int
          name                    str(100)
          manufacturer            str(100)  null
          description             text      null
          fields                  json
          created_at, updated_at  datetime
          row_version             int
          pk_system_kinds: primary key (id)
          uq_system_kinds_name: unique (name)
        table systems
          id, property_id, kind_id  int
          ip_address                str(45)   null
          port                      int       null
          username                  str(100)  null
          password_encrypted        text      null
          version                   str(50)   null
          notes                     text      null
          details                   json
          created_at, updated_at    datetime
          row_version               int
          pk_systems: primary key (id)
          fk_systems_property_id_properties: foreign key (property_id) -> properties (id) on delete CASCADE
          fk_systems_kind_id_system_kinds: foreign key (kind_id) -> system_kinds (id) on delete RESTRICT
          ix_systems_property_id: index (property_id)
          ix_systems_kind_id: index (kind_id)
        table equipment
          id, property_id             int
          item                        str(200)
          zone                        str(50)   null
          serial_number               str(100)  null
          install_date, warranty_end  date      null
          status                      str(20)
          notes                       text      null
          created_at, updated_at      datetime
          row_version                 int
          pk_equipment: primary key (id)
          fk_equipment_property_id_properties: foreign key (property_id) -> properties (id) on delete CASCADE
          ix_equipment_property_id: index (property_id)
    """


def upgrade() -> None:
    with op.batch_alter_table("property_history") as batch:
        batch.add_column(sa.Column("subject", sa.String(50), nullable=True))
    create_tables(op, TABLES)


def downgrade() -> None:
    drop_tables_of(op, TABLES)
    with op.batch_alter_table("property_history") as batch:
        batch.drop_column("subject")
