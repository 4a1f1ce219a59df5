"""the monitoring company a central-station integration is bound to: its messages reach only the
properties that station monitors"""

from vigil_shared.schema_spec import columns_migration

revision = "0010"
down_revision = "0009"


upgrade, downgrade = columns_migration("integrations", "monitoring_company_id  int  null")
