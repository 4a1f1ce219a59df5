"""The customer commands run from a task or a script: no Flask app context, no request, one commit each."""

import pytest
from flask import has_app_context
from helpers import customer, outbox_events
from sqlalchemy import select

from vigil_customer import commands
from vigil_customer.customers import Context
from vigil_customer.models import Customer, HistoryEntry, Note
from vigil_shared.errors import Problem
from vigil_shared.testing import identity_with

CLERK = identity_with(
    "customers.view",
    "customers.create",
    "customers.modify",
    "customers.delete",
    "customers.contact_info.modify",
    "notes.modify",
    locations=(1,),
)


def test_a_record_is_created_changed_noted_and_deleted_without_flask(runtime):
    assert not has_app_context()
    with runtime.db.new_session() as session:
        ctx = Context.of(runtime, session, CLERK)
        created = commands.create_customer(ctx, customer(city="Orem"), allow_duplicates=True)
        customer_id = created.id
        stale = Context.of(runtime, session, CLERK, if_match='"0.0"')
        with pytest.raises(Problem) as outdated:
            commands.update_customer(stale, commands.load_customer(stale, customer_id, "modify"), {"city": "Lehi"})
        assert outdated.value.status == 412
        with pytest.raises(Problem) as refused:  # no right in office 2: nothing is written
            commands.update_customer(ctx, commands.load_customer(ctx, customer_id, "modify"), {"location_id": 2})
        assert refused.value.status == 403
        commands.update_customer(ctx, commands.load_customer(ctx, customer_id, "modify"), {"city": "Lehi"})
        commands.add_note(ctx, commands.load_customer_tab(ctx, customer_id, "notes.modify"), {"text": "Called."})

    with runtime.db.new_session() as session:  # committed: another session sees it
        assert session.get(Customer, customer_id).city == "Lehi"
        assert session.scalar(select(Note.text).where(Note.customer_id == customer_id)) == "Called."
        sources = set(session.scalars(select(HistoryEntry.source).where(HistoryEntry.customer_id == customer_id)))
        assert sources == {"api"}
        assert [e.data["changed"] for e in outbox_events(session, "customer.updated")] == [["city"]]

    with runtime.db.new_session() as session:
        ctx = Context.of(runtime, session, CLERK)
        commands.delete_customer(ctx, commands.load_customer(ctx, customer_id, "delete"))
    with runtime.db.new_session() as session:
        assert session.get(Customer, customer_id) is None
        assert len(outbox_events(session, "customer.deleted")) == 1
