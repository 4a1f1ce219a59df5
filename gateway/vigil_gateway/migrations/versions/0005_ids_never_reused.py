"""ids never reused on SQLite: users, roles, locations, grants, API keys, audit entries

Without AUTOINCREMENT SQLite hands the id of the newest deleted row to the next one, so an audit
entry, a cached identity or an old URL naming a deleted user would name the next user created.
The audit log's append-only triggers go with the old table and are created again. PostgreSQL:
nothing to do, its sequences never go back.
"""

from alembic import op

from vigil_shared.migrations import rebuild_never_reusing_ids

revision = "0005"
down_revision = "0004"

APPEND_ONLY_SQLITE = [
    "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END",
    "CREATE TRIGGER audit_entries_no_delete BEFORE DELETE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END",
]


def _audited(target_type: str) -> list[str]:
    """The highest id of this kind the audit log names: a deleted record's id stays taken."""
    return [
        f"SELECT max(CAST(target_id AS INTEGER)) FROM audit_entries WHERE target_type = '{target_type}' "
        "AND target_id GLOB '[0-9]*' AND length(target_id) < 19"
    ]


TABLES = {
    "locations": _audited("location"),
    "roles": _audited("role"),
    "users": _audited("user"),
    "grants": [],
    "api_keys": _audited("api_key"),
    "audit_entries": [],
    "auth_state": [],
}


def upgrade() -> None:
    rebuild_never_reusing_ids(op, TABLES)
    if op.get_bind().dialect.name == "sqlite":
        for statement in APPEND_ONLY_SQLITE:
            op.execute(statement)


def downgrade() -> None:
    """Nothing to undo: the older code works as well on tables that never reuse an id."""
