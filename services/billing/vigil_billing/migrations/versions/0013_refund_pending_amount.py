"""the amount of a refund attempt whose outcome is unknown (the processor's answer was lost): the next
attempt must ask for the same amount under the same idempotency key, or it could refund twice"""

from vigil_shared.schema_spec import columns_migration

revision = "0013"
down_revision = "0012"


upgrade, downgrade = columns_migration("payments", "refund_pending_amount  bigint  null")
