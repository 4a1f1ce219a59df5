"""Systems installed at a property, with IP address, login and version.

Seeing them needs properties.view at the property's location, changing them properties.modify; the
password shows only to holders of confidential.installation_codes.view, and changing a stored one
needs confidential.installation_codes.modify (entering one where none is stored does not).
"""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import PaginationArgs, etag_headers
from vigil_shared.web import request_session

from .. import commands
from .. import systems as domain
from ..schemas import SystemCreateSchema, SystemPageSchema, SystemPatchSchema, SystemSchema
from .common import A_PROPERTY, INACTIVE, NOT_DELETED, context, if_match, loaded, property_rule
from .present import system_body

blp = Blueprint(
    "systems",
    __name__,
    url_prefix=f"{A_PROPERTY}/systems",
    description="Systems at a property and how to log in to them",
)


def _answer(system, location_id, status=200, **headers):
    session = request_session()
    kind = domain.kinds_by_id(session, [system.kind_id]).get(system.kind_id)
    return system_body(system, kind, location_id), status, etag_headers(system, version_attr="row_version", **headers)


@blp.route("")
class PropertySystems(MethodView):
    @blp.read("properties.view", SystemPageSchema, rule=property_rule, query=PaginationArgs)
    def get(self, property_id, page, per_page):
        """List the systems at a property."""
        session, scoped = request_session(), loaded()
        result = domain.list_systems(session, property_id, page=page, per_page=per_page)
        kinds = domain.kinds_by_id(session, (system.kind_id for system in result.items))
        return result.answer(lambda system: system_body(system, kinds.get(system.kind_id), scoped.location_id))

    @blp.create("properties.modify", SystemSchema, rule=property_rule, body=SystemCreateSchema, conflict=INACTIVE)
    def post(self, data, property_id):
        """Assign a system of some kind to the property, with the fields the kind asks for."""
        scoped = loaded()
        system = commands.add_system(context(), scoped, data)
        return _answer(
            system,
            scoped.location_id,
            201,
            Location=url_for("systems.PropertySystem", property_id=property_id, system_id=system.id),
        )


@blp.route("/<int:system_id>")
class PropertySystem(MethodView):
    @blp.read("properties.view", SystemSchema, rule=property_rule)
    def get(self, property_id, system_id):
        """Read one system."""
        return _answer(domain.get_system(request_session(), property_id, system_id), loaded().location_id)

    @blp.change("properties.modify", SystemSchema, rule=property_rule, body=SystemPatchSchema, conflict=INACTIVE)
    def patch(self, changes, property_id, system_id):
        """Change some fields of a system."""
        scoped = loaded()
        return _answer(commands.update_system(context(if_match()), scoped, system_id, changes), scoped.location_id)

    @blp.remove("properties.modify", rule=property_rule, conflict=INACTIVE, stale=NOT_DELETED)
    def delete(self, property_id, system_id):
        """Remove a system from the property."""
        commands.remove_system(context(if_match()), loaded(), system_id)
        return None
