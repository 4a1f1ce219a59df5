"""ids never reused on SQLite: customers, notes, contacts, tags, files, custom fields, history, outbox

Without AUTOINCREMENT SQLite hands the id of the newest deleted customer to the next one, and a
stale form (``If-Match: "750.1"``), a late ``customer.deleted`` or a property replica naming the
old customer then lands on the new one. Rebuilt with AUTOINCREMENT, the next id is above every id
the table or the retained events ever named. PostgreSQL: nothing to do, sequences never go back.
"""

from vigil_shared.migrations import never_reusing_ids_migration

revision = "0005"
down_revision = "0004"


CUSTOMERS_IN_EVENTS = (
    "SELECT max(CAST(json_extract(data, '$.customer_id') AS INTEGER)) FROM outbox_events "
    "WHERE json_valid(data) AND json_type(data, '$.customer_id') = 'integer'"
)


def _in_history(*target_types: str) -> list[str]:
    """The highest such id the history names: a deleted contact's entries stay with its customer."""
    kinds = ", ".join(f"'{kind}'" for kind in target_types)
    return [f"SELECT max(target_id) FROM customer_history WHERE target_type IN ({kinds})"]


TABLES = {
    "customers": [CUSTOMERS_IN_EVENTS],
    "customer_notes": _in_history("note", "ticket"),
    "customer_contacts": _in_history("contact"),
    "tags": _in_history("tag"),
    "customer_files": _in_history("file"),
    "custom_fields": [],
    "customer_history": [],
    "customer_search_terms": [],
    "outbox_events": [],
}

upgrade, downgrade = never_reusing_ids_migration(TABLES)
