"""webhook bodies kept once, compressed, for a week; SQLite gives freed pages back to the file system

- ``webhook_bodies``: a body as sent, one row however many deliveries sent it (an event's deliveries to
  owners who read it alike, its retries), zlib-compressed then encrypted, kept
  ``VIGIL_WEBHOOK_BODY_RETENTION_DAYS`` (7); a delivery names its body by ``body_id``. The delivery log
  (status, attempts, timings, response excerpts) stays ``VIGIL_FEED_RETENTION_DAYS`` (30).
- ``webhook_deliveries.payload`` (an uncompressed encrypted body per delivery) is emptied and no longer
  written. The column stays, so a process of the previous release still running during an upgrade
  (its claim writes it) does not fail; a later release drops it.
- On SQLite the file is rebuilt once with ``auto_vacuum = INCREMENTAL`` (``VACUUM``, outside the
  migration's transaction; it needs the file's size again in free disk space for a moment): from then on
  the worker's prune hands the pages it freed back to the file system (``PRAGMA incremental_vacuum``),
  where before the file only grew. If another process holds the file meanwhile, the rebuild is left
  (a warning says how to run it with Vigil stopped) and the file behaves as before until then.
"""

import logging

import sqlalchemy as sa
from alembic import op

from vigil_shared.db import UTCDateTime

revision = "0014"
down_revision = "0013"

log = logging.getLogger("alembic.runtime.migration")

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "webhook_bodies",
        sa.Column("id", BIG_ID, primary_key=True, autoincrement=True),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("digest", name="uq_webhook_bodies_digest"),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_webhook_bodies_created_at", "webhook_bodies", ["created_at"])
    with op.batch_alter_table("webhook_deliveries", recreate="never") as batch:
        batch.add_column(sa.Column("body_id", BIG_ID, nullable=True))
    op.execute("UPDATE webhook_deliveries SET payload = NULL WHERE payload IS NOT NULL")
    bind = op.get_bind()
    if bind.dialect.name == "sqlite" and bind.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 2:
        with op.get_context().autocommit_block():
            bind.exec_driver_sql("PRAGMA auto_vacuum = INCREMENTAL")
            try:
                bind.exec_driver_sql("VACUUM")
            except sa.exc.OperationalError as exc:  # another process holds the file: the schema is what counts
                log.warning(
                    "gateway database not rebuilt with auto_vacuum=INCREMENTAL (%s); with Vigil stopped run: "
                    "sqlite3 <gateway.db> 'PRAGMA auto_vacuum = INCREMENTAL; VACUUM;'",
                    exc.orig,
                )


def downgrade() -> None:
    with op.batch_alter_table("webhook_deliveries", recreate="never") as batch:
        batch.drop_column("body_id")
    op.drop_index("ix_webhook_bodies_created_at", table_name="webhook_bodies")
    op.drop_table("webhook_bodies")
