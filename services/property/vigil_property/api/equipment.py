"""Equipment installed at a property (equipment.view / equipment.modify at its location)."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import etag_headers
from vigil_shared.web import request_session

from .. import commands
from .. import equipment as domain
from ..schemas import (
    EquipmentCreateSchema,
    EquipmentListArgs,
    EquipmentPageSchema,
    EquipmentPatchSchema,
    EquipmentSchema,
)
from .common import A_PROPERTY, INACTIVE, NOT_DELETED, context, if_match, loaded, property_rule

blp = Blueprint(
    "equipment", __name__, url_prefix=f"{A_PROPERTY}/equipment", description="Equipment installed at a property"
)


@blp.route("")
class PropertyEquipment(MethodView):
    @blp.read("equipment.view", EquipmentPageSchema, rule=property_rule, query=EquipmentListArgs)
    def get(self, property_id, page, per_page, status=None):
        """List the equipment at a property by zone, optionally by `status`."""
        result = domain.list_equipment(request_session(), property_id, page=page, per_page=per_page, status=status)
        return result.answer()

    @blp.create("equipment.modify", EquipmentSchema, rule=property_rule, body=EquipmentCreateSchema, conflict=INACTIVE)
    def post(self, data, property_id):
        """Record equipment installed at the property."""
        created = commands.add_equipment(context(), loaded(), data)
        return (
            created,
            201,
            etag_headers(
                created,
                version_attr="row_version",
                Location=url_for("equipment.PropertyEquipmentItem", property_id=property_id, equipment_id=created.id),
            ),
        )


@blp.route("/<int:equipment_id>")
class PropertyEquipmentItem(MethodView):
    @blp.read("equipment.view", EquipmentSchema, rule=property_rule)
    def get(self, property_id, equipment_id):
        """Read one piece of equipment."""
        found = domain.get_equipment(request_session(), property_id, equipment_id)
        return found, 200, etag_headers(found, version_attr="row_version")

    @blp.change("equipment.modify", EquipmentSchema, rule=property_rule, body=EquipmentPatchSchema, conflict=INACTIVE)
    def patch(self, changes, property_id, equipment_id):
        """Change some fields; equipment taken out of the site is marked `removed`."""
        found = commands.update_equipment(context(if_match()), loaded(), equipment_id, changes)
        return found, 200, etag_headers(found, version_attr="row_version")

    @blp.remove("equipment.modify", rule=property_rule, conflict=INACTIVE, stale=NOT_DELETED)
    def delete(self, property_id, equipment_id):
        """Delete a record entered by mistake."""
        commands.remove_equipment(context(if_match()), loaded(), equipment_id)
        return None
