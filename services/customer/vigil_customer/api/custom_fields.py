"""Custom field definitions: any signed-in caller may read them, `catalogs.manage` changes them."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import etag_headers
from vigil_shared.idempotency import idempotent
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import request_session, requires

from .. import commands
from .. import custom_fields as domain
from ..schemas import (
    CustomFieldArgs,
    CustomFieldCreateSchema,
    CustomFieldListSchema,
    CustomFieldPatchSchema,
    CustomFieldSchema,
)
from .common import context, if_match

blp = Blueprint(
    "custom_fields",
    __name__,
    url_prefix="/api/v1/custom-fields",
    description="Admin-defined fields of customers and leads",
)


@blp.route("")
class CustomFields(MethodView):
    @requires(AUTHENTICATED)
    @blp.arguments(CustomFieldArgs, location="query", as_kwargs=True)
    @blp.response(200, CustomFieldListSchema)
    def get(self, kind=None, include_inactive=False):
        """The defined fields in form order; `kind` keeps those of customers or of leads."""
        return {"items": domain.definitions(request_session(), kind, active_only=not include_inactive)}

    @requires("catalogs.manage")
    @idempotent
    @blp.arguments(CustomFieldCreateSchema)
    @blp.response(201, CustomFieldSchema)
    @blp.alt_response(409, description="A field with this key exists")
    def post(self, data):
        """Define a field: text, number, date, select (with options) or checkbox; required or not; per kind."""
        definition = commands.create_custom_field(context(), data)
        return (
            definition,
            201,
            etag_headers(definition, Location=url_for("custom_fields.CustomFieldItem", definition_id=definition.id)),
        )


@blp.route("/<int:definition_id>")
class CustomFieldItem(MethodView):
    @requires(AUTHENTICATED)
    @blp.response(200, CustomFieldSchema)
    def get(self, definition_id):
        """One field definition."""
        definition = domain.get_definition(request_session(), definition_id)
        return definition, 200, etag_headers(definition)

    @requires("catalogs.manage")
    @blp.arguments(CustomFieldPatchSchema)
    @blp.response(200, CustomFieldSchema)
    @blp.alt_response(409, description="A removed option is still used by some records")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def patch(self, changes, definition_id):
        """Change a field's label, options, required flag, kinds, position or active flag (not key or type)."""
        definition = commands.update_custom_field(context(if_match()), definition_id, changes)
        return definition, 200, etag_headers(definition)

    @requires("catalogs.manage")
    @blp.response(204)
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was deleted")
    def delete(self, definition_id):
        """Remove a field; values already stored are no longer shown or checked."""
        commands.delete_custom_field(context(if_match()), definition_id)
        return None
