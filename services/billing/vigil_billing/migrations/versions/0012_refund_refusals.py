"""how many refunds of a payment the processor refused: each refusal ends an attempt, so the next
refund attempt sends a new idempotency key"""

from vigil_shared.schema_spec import columns_migration

revision = "0012"
down_revision = "0011"


upgrade, downgrade = columns_migration("payments", "refund_refusals  int  default=0")
