"""outbox and inbox"""

from vigil_shared.migrations import messaging_tables_migration

revision = "0001"
down_revision = None

upgrade, downgrade = messaging_tables_migration()
