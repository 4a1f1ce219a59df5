"""Custom field definitions: any signed-in caller may read them, `catalogs.manage` changes them."""

from __future__ import annotations

from flask_smorest import Blueprint

from vigil_shared.catalog import CatalogSchemas, Operation

from .. import commands
from .. import custom_fields as domain
from ..schemas import (
    CustomFieldArgs,
    CustomFieldCreateSchema,
    CustomFieldListSchema,
    CustomFieldPatchSchema,
    CustomFieldSchema,
)
from .common import catalog_routes

blp = Blueprint(
    "custom_fields",
    __name__,
    url_prefix="/api/v1/custom-fields",
    description="Admin-defined fields of customers and leads",
)


catalog_routes(
    blp,
    ("CustomFields", "CustomFieldItem", "definition_id"),
    CatalogSchemas(
        CustomFieldSchema, CustomFieldCreateSchema, CustomFieldPatchSchema, CustomFieldArgs, CustomFieldListSchema
    ),
    list=Operation(
        "The defined fields in form order; `kind` keeps those of customers or of leads.",
        lambda session, kind=None, include_inactive=False: {
            "items": domain.definitions(session, kind, active_only=not include_inactive)
        },
    ),
    create=Operation(
        "Define a field: text, number, date, select (with options) or checkbox; required or not; per kind.",
        commands.create_custom_field,
        conflict="A field with this key exists",
    ),
    read=Operation("One field definition.", domain.get_definition),
    update=Operation(
        "Change a field's label, options, required flag, kinds, position or active flag (not key or type).",
        commands.update_custom_field,
        conflict="A removed option is still used by some records",
    ),
    delete=Operation(
        "Remove a field; values already stored are no longer shown or checked.", commands.delete_custom_field
    ),
)
