"""The gateway's commands run from a script: no Flask app context, no request, one commit, audited after it."""

import pytest
from flask import has_app_context
from sqlalchemy import select

from vigil_gateway import commands
from vigil_gateway.models import AuditEntry, Location
from vigil_shared.errors import Problem
from vigil_shared.testing import identity_with

MANAGER = identity_with("locations.manage", username="office-manager")


def test_an_office_is_opened_and_renamed_without_flask(db):
    assert not has_app_context()
    with db.new_session() as session:
        ctx = commands.Context(session=session, identity=MANAGER, database=db)
        opened = commands.create_location(ctx, {"name": "Script Office"})
        stale = commands.Context(session=session, identity=MANAGER, database=db, if_match=f'"{opened.id}.0"')
        with pytest.raises(Problem) as outdated:
            commands.update_location(stale, opened.id, {"name": "Never"})
        assert outdated.value.status == 412
        commands.update_location(ctx, opened.id, {"name": "Renamed Office"})
        with pytest.raises(Problem) as refused:
            commands.create_location(
                commands.Context(session=session, identity=identity_with(), database=db), {"name": "Not Mine"}
            )
        assert refused.value.status == 403

    with db.new_session() as session:
        assert session.get(Location, opened.id).name == "Renamed Office"
        assert session.scalar(select(Location.id).where(Location.name == "Not Mine")) is None
        entries = session.execute(
            select(AuditEntry.action, AuditEntry.actor_name)
            .where(AuditEntry.target_id == str(opened.id), AuditEntry.target_type == "location")
            .order_by(AuditEntry.id)
        ).all()
        assert [tuple(entry) for entry in entries] == [
            ("location.create", "office-manager"),
            ("location.update", "office-manager"),
        ]
