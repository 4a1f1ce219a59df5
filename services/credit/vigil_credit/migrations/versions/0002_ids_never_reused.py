"""outbox positions never reused on SQLite (else a new outbox row gets the newest pruned one's)"""

from vigil_shared.migrations import never_reusing_ids_migration

revision = "0002"
down_revision = "0001"

upgrade, downgrade = never_reusing_ids_migration({"outbox_events": []})
