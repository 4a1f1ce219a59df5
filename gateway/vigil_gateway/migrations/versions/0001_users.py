"""users"""

from alembic import op

from vigil_shared.schema_spec import create_tables

revision = "0001"
down_revision = None


def upgrade() -> None:
    create_tables(
        op,
        """
        table users
          id                      int       pk
          username                str(150)
          email                   str(254)  null
          name                    str(200)  null
          password_hash           str(255)
          is_admin, active        bool
          created_at, updated_at  datetime
          pk_users: primary key (id)
          uq_users_username: unique (username)
    """,
    )


def downgrade() -> None:
    op.drop_table("users")
