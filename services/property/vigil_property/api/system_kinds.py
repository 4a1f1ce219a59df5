"""The catalog of system kinds: defined by admins (catalogs.manage), readable by every signed-in caller.

The catalog names products ("DSC PowerSeries") and the fields they ask for; it holds nothing about
any customer or location, so reading it needs no location-scoped right.
"""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint

from vigil_shared.http import etag_headers
from vigil_shared.idempotency import idempotent
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import request_session, requires

from .. import commands
from .. import systems as domain
from ..schemas import (
    SystemKindCreateSchema,
    SystemKindListArgs,
    SystemKindPageSchema,
    SystemKindPatchSchema,
    SystemKindSchema,
)
from .common import context, if_match

blp = Blueprint(
    "system_kinds",
    __name__,
    url_prefix="/api/v1/system-kinds",
    description="The catalog of system kinds and the fields each asks for",
)


@blp.route("")
class SystemKinds(MethodView):
    @requires(AUTHENTICATED)
    @blp.arguments(SystemKindListArgs, location="query", as_kwargs=True)
    @blp.response(200, SystemKindPageSchema)
    def get(self, page, per_page, q=None):
        """List system kinds by name."""
        result = domain.list_kinds(request_session(), page=page, per_page=per_page, q=q)
        return result.body(), 200, result.headers()

    @requires("catalogs.manage")
    @idempotent
    @blp.arguments(SystemKindCreateSchema)
    @blp.response(201, SystemKindSchema)
    @blp.alt_response(409, description="Another kind already has this name")
    def post(self, data):
        """Define a system kind and the fields a system of this kind asks for."""
        kind = commands.create_kind(context(), data)
        return (
            kind,
            201,
            etag_headers(
                kind, version_attr="row_version", Location=url_for("system_kinds.SystemKindItem", kind_id=kind.id)
            ),
        )


@blp.route("/<int:kind_id>")
class SystemKindItem(MethodView):
    @requires(AUTHENTICATED)
    @blp.response(200, SystemKindSchema)
    def get(self, kind_id):
        """Read one system kind."""
        kind = domain.get_kind(request_session(), kind_id)
        return kind, 200, etag_headers(kind, version_attr="row_version")

    @requires("catalogs.manage")
    @blp.arguments(SystemKindPatchSchema)
    @blp.response(200, SystemKindSchema)
    @blp.alt_response(409, description="Another kind already has this name")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was changed")
    def patch(self, changes, kind_id):
        """Rename a kind or change the fields it asks for (existing systems keep their values)."""
        kind = commands.update_kind(context(if_match()), kind_id, changes)
        return kind, 200, etag_headers(kind, version_attr="row_version")

    @requires("catalogs.manage")
    @blp.response(204)
    @blp.alt_response(409, description="Systems of this kind are still assigned to properties")
    @blp.alt_response(412, description="`If-Match` names an older version; nothing was deleted")
    def delete(self, kind_id):
        """Delete a kind no system uses any more."""
        commands.delete_kind(context(if_match()), kind_id)
        return None
