"""Webhooks and the change feed: events received from the services, subscriptions, deliveries, attempts"""

import sqlalchemy as sa
from alembic import op

from vigil_shared.schema_spec import create_tables

revision = "0007"
down_revision = "0006"

BIG = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    create_tables(
        op,
        """
        table feed_events sqlite_autoincrement
          position                  big       pk autoinc
          event_id                  str(36)   unique
          type                      str(100)
          version                   int
          occurred_at, received_at  datetime
          source                    str(40)   null
          request_id                str(64)   null
          data                      json
          location_id               int       null
          customer_id               big       null
          ix_feed_events_type: index (type)
          ix_feed_events_customer_id: index (customer_id)
          ix_feed_events_received_at: index (received_at)
        table record_locations
          customer_id  big  pk noautoinc
          location_id  int  null
        table webhook_subscriptions sqlite_autoincrement
          id                                    int        pk
          url                                   str(2000)
          event_types                           json       null
          description                           str(500)   null
          enabled                               bool
          owner_user_id, owner_key_id           int        null
          secret                                text
          previous_secret                       text       null
          previous_secret_until, failing_since  datetime   null
          disabled_reason                       str(300)   null
          disabled_at                           datetime   null
          version                               int        default=1
          created_at, updated_at                datetime
          ix_webhook_subscriptions_owner_user_id: index (owner_user_id)
          ix_webhook_subscriptions_owner_key_id: index (owner_key_id)
        table webhook_deliveries sqlite_autoincrement
          id                      big       pk autoinc
          subscription_id         int       fk=webhook_subscriptions.id ondelete=CASCADE
          event_id                str(36)
          event_type              str(100)
          position                big
          payload                 text      null
          status                  str(20)
          attempts                int
          next_attempt_at         datetime  null
          last_status_code        int       null
          created_at, updated_at  datetime
          uq_webhook_deliveries_event: unique (subscription_id, event_id)
          ix_webhook_deliveries_event_id: index (event_id)
          ix_webhook_deliveries_created_at: index (created_at)
        table webhook_attempts sqlite_autoincrement
          id                big       pk autoinc
          delivery_id       big       fk=webhook_deliveries.id ondelete=CASCADE
          at                datetime
          status_code       int       null
          latency_ms        int
          response_excerpt  str(500)  null
          error             str(300)  null
          ix_webhook_attempts_delivery_id: index (delivery_id)
    """,
    )


def downgrade() -> None:
    for table in ("webhook_attempts", "webhook_deliveries", "webhook_subscriptions", "record_locations", "feed_events"):
        op.drop_table(table)
