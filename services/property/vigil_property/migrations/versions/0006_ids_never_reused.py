"""ids never reused on SQLite: properties, systems, equipment, appointments, history, outbox

Without AUTOINCREMENT SQLite hands the id of the newest deleted property to the next one, so the
customer service's account-number index, an old URL or an audit entry naming the deleted property
would name the new one. Rebuilt with AUTOINCREMENT, the next id is above every id the table or the
retained events ever named. PostgreSQL: nothing to do, sequences never go back.
"""

from vigil_shared.migrations import never_reusing_ids_migration

revision = "0006"
down_revision = "0005"

PROPERTIES_IN_EVENTS = (
    "SELECT max(CAST(json_extract(data, '$.property_id') AS INTEGER)) FROM outbox_events "
    "WHERE json_valid(data) AND json_type(data, '$.property_id') = 'integer'"
)

TABLES = {
    "properties": [PROPERTIES_IN_EVENTS],
    "property_history": [],
    "system_kinds": [],
    "systems": [],
    "equipment": [],
    "appointments": [],
    "outbox_events": [],
}

upgrade, downgrade = never_reusing_ids_migration(TABLES)
