"""dead letters: the events this service's consumer can never apply, kept for operators (``messaging.dead_letters``)"""

from vigil_shared.migrations import dead_letters_migration

revision = "0003"
down_revision = "0002"

upgrade, downgrade = dead_letters_migration()
