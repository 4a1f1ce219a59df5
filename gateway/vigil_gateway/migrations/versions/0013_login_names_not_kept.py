"""failed sign-ins keep no typed username: the throttling windows and the audit log written before

From this revision the throttling windows key a username by its HMAC (``login_guard.name_key``), and the
audit of a failed sign-in names the account it matched (id and own username) or none. The rows written
before kept the typed text, which at times is a password typed into the username field:

- ``login_failures``: the ``user:``, ``ghost:`` and ``ghost-lock:`` windows keyed by a plain name are
  deleted (they cannot be re-keyed here without the secret). Accounts keep their own lockout (the users'
  ``failed_logins``/``locked_until``); a per-username minute, or the count of a name no account has,
  starts again. ``addr:`` windows are kept.
- ``audit_entries``: a sign-in that matched no account (``auth.login`` without a target) loses its
  ``actor_name`` and says ``"account": "none"`` in its details. The append-only triggers are lifted for
  this one statement and put back, in the same transaction.
"""

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"

SQLITE_TRIGGER = (
    "CREATE TRIGGER audit_entries_no_update BEFORE UPDATE ON audit_entries "
    "BEGIN SELECT RAISE(ABORT, 'audit_entries is append-only'); END"
)

audit = sa.table(
    "audit_entries",
    sa.column("id", sa.Integer),
    sa.column("action", sa.String),
    sa.column("target_id", sa.String),
    sa.column("actor_name", sa.String),
    sa.column("details", sa.JSON),
)


def upgrade() -> None:
    op.execute(
        "DELETE FROM login_failures WHERE scope_key LIKE 'user:%' OR scope_key LIKE 'ghost:%'"
        " OR scope_key LIKE 'ghost-lock:%'"
    )
    bind = op.get_bind()
    unknown = sa.and_(audit.c.action == "auth.login", audit.c.target_id.is_(None))
    rows = bind.execute(sa.select(audit.c.id, audit.c.details).where(unknown, audit.c.actor_name.isnot(None))).all()
    if not rows:
        return
    postgres = bind.dialect.name == "postgresql"
    op.execute(
        "ALTER TABLE audit_entries DISABLE TRIGGER audit_entries_no_change"
        if postgres
        else "DROP TRIGGER audit_entries_no_update"
    )
    for row_id, details in rows:
        bind.execute(
            sa.update(audit)
            .where(audit.c.id == row_id)
            .values(actor_name=None, details={**(details or {}), "account": "none"})
        )
    op.execute("ALTER TABLE audit_entries ENABLE TRIGGER audit_entries_no_change" if postgres else SQLITE_TRIGGER)


def downgrade() -> None:
    """Nothing to restore: the plain names are gone on purpose."""
