"""The property commands run from a task or a script: no Flask app context, no request, one commit each."""

import pytest
from flask import has_app_context
from sqlalchemy import select

from vigil_property import commands
from vigil_property.models import Property, PropertyHistory
from vigil_shared.commands import Context
from vigil_shared.errors import Problem
from vigil_shared.testing import identity_with

CLERK = identity_with("properties.view", "properties.create", "properties.modify", locations=(1,))


def test_a_property_is_created_and_transferred_without_flask(runtime, known, outbox):
    known(7)
    known(8)
    known(9, location_id=2)
    assert not has_app_context()
    with runtime.db.new_session() as session:
        ctx = Context.of(runtime, session, CLERK)
        created = commands.create_property(
            ctx, commands.confirm_customer(ctx, 7, "properties.create"), {"address": "1 Elm St"}
        )
        property_id = created.property.id
        scoped = commands.load_property(ctx, property_id, "properties.modify")
        with pytest.raises(Problem) as refused:  # no right where customer 9 is: as an unknown one, nothing moves
            commands.transfer_property(ctx, scoped, 9)
        assert refused.value.status == 422
        stale = Context.of(runtime, session, CLERK, if_match='"0.0"')
        with pytest.raises(Problem) as outdated:
            commands.transfer_property(stale, commands.load_property(stale, property_id, "properties.modify"), 8)
        assert outdated.value.status == 412
        moved = commands.transfer_property(
            ctx, commands.load_property(ctx, property_id, "properties.modify"), 8, "new homeowner"
        )
        assert moved.location_id == 1

    with runtime.db.new_session() as session:  # committed: another session sees it
        assert session.get(Property, property_id).customer_id == 8
        actions = session.scalars(select(PropertyHistory.action).where(PropertyHistory.property_id == property_id))
        assert sorted(actions) == ["created", "transferred"]
    assert [data["to_customer_id"] for _, data in outbox("property.transferred")] == [8]
    assert [data["customer_id"] for _, data in outbox("property.created")] == [7]
