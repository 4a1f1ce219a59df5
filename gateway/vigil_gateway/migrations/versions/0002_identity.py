"""identity: locations, roles, grants, sessions, API keys, login throttling, append-only audit"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime
from vigil_shared.schema_spec import create_tables, drop_tables

revision = "0002"
down_revision = "0001"

APPEND_ONLY_SQLITE = [
    "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END",
    "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END",
]
APPEND_ONLY_POSTGRES = [
    "CREATE FUNCTION audit_entries_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'audit_entries is append-only'; END $$",
    "CREATE TRIGGER audit_entries_no_change BEFORE UPDATE OR DELETE ON audit_entries "
    "FOR EACH ROW EXECUTE FUNCTION audit_entries_append_only()",
    "CREATE TRIGGER audit_entries_no_truncate BEFORE TRUNCATE ON audit_entries "
    "FOR EACH STATEMENT EXECUTE FUNCTION audit_entries_append_only()",
]


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("failed_logins", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(sa.Column("locked_until", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("password_changed_at", UTCDateTime(), nullable=True))
    create_tables(
        op,
        """
        table locations
          id                      int       pk
          name                    str(120)
          address                 str(300)  null
          phone                   str(40)   null
          active                  bool
          created_at, updated_at  datetime
          pk_locations: primary key (id)
          uq_locations_name: unique (name)
        table roles
          id                      int       pk
          name                    str(120)
          description             text      null
          permissions             json
          created_at, updated_at  datetime
          pk_roles: primary key (id)
          uq_roles_name: unique (name)
        table grants
          id                int  pk
          user_id, role_id  int
          location_id       int  null
          pk_grants: primary key (id)
          fk_grants_user_id_users: foreign key (user_id) -> users (id) on delete CASCADE
          fk_grants_role_id_roles: foreign key (role_id) -> roles (id) on delete RESTRICT
          fk_grants_location_id_locations: foreign key (location_id) -> locations (id) on delete RESTRICT
          uq_grants_user_role_location: unique (user_id, role_id, location_id)
          ix_grants_user_id: index (user_id)
          ix_grants_role_id: index (role_id)
        table sessions
          id                                    str(32)
          user_id                               int
          refresh_hash                          str(64)
          previous_refresh_hash, client_ip      str(64)   null
          user_agent                            str(300)  null
          created_at, expires_at, last_used_at  datetime
          revoked_at                            datetime  null
          pk_sessions: primary key (id)
          fk_sessions_user_id_users: foreign key (user_id) -> users (id) on delete CASCADE
          ix_sessions_user_id: index (user_id)
        table api_keys
          id                                    int       pk
          name                                  str(120)
          prefix                                str(24)
          secret_hash                           str(64)
          permissions                           json
          location_ids                          json      null
          created_by                            int       null
          created_at                            datetime
          expires_at, last_used_at, revoked_at  datetime  null
          pk_api_keys: primary key (id)
          uq_api_keys_prefix: unique (prefix)
          fk_api_keys_created_by_users: foreign key (created_by) -> users (id) on delete SET NULL
        table login_failures
          scope_key     str(200)
          window_start  datetime
          count         int
          pk_login_failures: primary key (scope_key)
        table audit_entries
          id                     big       pk autoinc
          occurred_at            datetime
          actor_id               str(64)   null
          actor_name             str(150)  null
          actor_kind             str(20)   null
          client_ip, request_id  str(64)   null
          action                 str(80)
          outcome                str(20)
          target_type            str(40)   null
          target_id              str(64)   null
          details                json      null
          pk_audit_entries: primary key (id)
          ix_audit_entries_occurred_at: index (occurred_at)
          ix_audit_entries_actor_name: index (actor_name)
          ix_audit_entries_action: index (action)
    """,
    )
    dialect = op.get_bind().dialect.name
    for statement in APPEND_ONLY_POSTGRES if dialect == "postgresql" else APPEND_ONLY_SQLITE:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_entries")
        op.execute("DROP FUNCTION audit_entries_append_only()")
    else:
        op.drop_table("audit_entries")
    drop_tables(op, "login_failures api_keys sessions grants roles locations")
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_changed_at")
        batch.drop_column("locked_until")
        batch.drop_column("failed_logins")
