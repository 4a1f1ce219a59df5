"""Integrations: central stations posting signed signals and account statuses, and the ids they sent"""

from vigil_shared.schema_spec import tables_migration

revision = "0008"
down_revision = "0007"


upgrade, downgrade = tables_migration(
    """
        table integrations sqlite_autoincrement
          id                                    int        pk
          name                                  str(120)   unique
          secret                                text
          previous_secret                       text       null
          previous_secret_until                 datetime   null
          rate_limit_per_minute                 int
          enabled                               bool
          accounts_url                          str(2000)  null
          drift_report                          json       null
          drift_checked_at, drift_requested_at  datetime   null
          drift_error                           str(300)   null
          created_by                            int        null
          version                               int        default=1
          created_at, updated_at                datetime
        table incoming_messages
          integration_id  int       pk noautoinc
          message_id      str(100)  pk
          received_at     datetime
          ix_incoming_messages_received_at: index (received_at)
    """
)
