"""The catalog of system kinds: defined by admins (catalogs.manage), readable by every signed-in caller.

The catalog names products ("DSC PowerSeries") and the fields they ask for; it holds nothing about
any customer or location, so reading it needs no location-scoped right.
"""

from __future__ import annotations

from functools import partial

from flask_smorest import Blueprint

from vigil_shared.catalog import (
    CatalogSchemas,
    Operation,
    page_response,
    register_catalog,
)
from vigil_shared.http import etag_headers
from vigil_shared.web import request_session

from .. import commands
from .. import systems as domain
from ..schemas import (
    SystemKindCreateSchema,
    SystemKindListArgs,
    SystemKindPageSchema,
    SystemKindPatchSchema,
    SystemKindSchema,
)
from .common import context

blp = Blueprint(
    "system_kinds",
    __name__,
    url_prefix="/api/v1/system-kinds",
    description="The catalog of system kinds and the fields each asks for",
)


NAME_TAKEN = "Another kind already has this name"


register_catalog(
    blp,
    ("SystemKinds", "SystemKindItem", "kind_id"),
    CatalogSchemas(
        SystemKindSchema, SystemKindCreateSchema, SystemKindPatchSchema, SystemKindListArgs, SystemKindPageSchema
    ),
    session=request_session,
    context=context,
    etag_headers=partial(etag_headers, version_attr="row_version"),
    list=Operation(
        "List system kinds by name.",
        lambda session, page, per_page, q=None: page_response(
            domain.list_kinds(session, page=page, per_page=per_page, q=q)
        ),
    ),
    create=Operation(
        "Define a system kind and the fields a system of this kind asks for.", commands.create_kind, NAME_TAKEN
    ),
    read=Operation("Read one system kind.", domain.get_kind),
    update=Operation(
        "Rename a kind or change the fields it asks for (existing systems keep their values).",
        commands.update_kind,
        conflict=NAME_TAKEN,
    ),
    delete=Operation(
        "Delete a kind no system uses any more.",
        commands.delete_kind,
        conflict="Systems of this kind are still assigned to properties",
    ),
)
