"""the customer's Monitored By in the replica: only the central station of that monitoring company
links the customer's unlinked properties with its first message"""

from vigil_shared.schema_spec import columns_migration

revision = "0013"
down_revision = "0012"


upgrade, downgrade = columns_migration("known_customers", "monitoring_company_id  int  null")
