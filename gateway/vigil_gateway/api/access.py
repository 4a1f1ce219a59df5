"""Roles, office locations and API keys."""

from __future__ import annotations

from functools import partial

from flask import url_for
from flask.views import MethodView
from sqlalchemy import select

from vigil_shared.catalog import CatalogSchemas, Operation, page_response, register_catalog
from vigil_shared.endpoints import Blueprint
from vigil_shared.http import PaginationArgs, paginate
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import current_identity

from .. import commands, rights
from ..context import db_session
from ..models import ApiKey, Role
from ..schemas import (
    ApiKeyCreatedSchema,
    ApiKeyCreateSchema,
    ApiKeyPageSchema,
    ApiKeySchema,
    LocationCreateSchema,
    LocationPageSchema,
    LocationPatchSchema,
    LocationSchema,
    RoleCreateSchema,
    RolePageSchema,
    RolePatchSchema,
    RoleSchema,
)
from ..versions import etag_headers
from .common import STALE, at_version, context, if_match

blp = Blueprint("access", __name__, url_prefix="/api/v1", description="Roles, office locations and API keys")


# roles and locations: catalog views wired to the gateway's session, command context and ETags
catalog_routes = partial(
    register_catalog, session=db_session, context=context, etag_headers=etag_headers, stale=(STALE, STALE)
)


def _page(statement, args):
    return page_response(paginate(db_session(), statement, args["page"], args["per_page"]))


# --- roles ---------------------------------------------------------------------------------------


catalog_routes(
    blp,
    ("Roles", "RoleItem", "role_id"),
    CatalogSchemas(RoleSchema, RoleCreateSchema, RolePatchSchema, PaginationArgs, RolePageSchema),
    path="/roles",
    reads="roles.manage",
    writes="roles.manage",
    list=Operation(
        "List roles.",
        lambda session, page, per_page: page_response(
            paginate(session, select(Role).order_by(Role.name), page, per_page)
        ),
    ),
    create=Operation("Create a role: a named set of permissions from the catalog.", commands.create_role),
    read=Operation("Read one role.", rights.get_role),
    update=Operation("Change a role; every holder's rights change with it on their next call.", commands.update_role),
    delete=Operation("Delete a role no one holds any more.", commands.delete_role, "Users still hold this role"),
)


# --- locations -----------------------------------------------------------------------------------


catalog_routes(
    blp,
    ("Locations", "LocationItem", "location_id"),
    CatalogSchemas(LocationSchema, LocationCreateSchema, LocationPatchSchema, PaginationArgs, LocationPageSchema),
    path="/locations",
    reads=AUTHENTICATED,
    writes="locations.manage",
    list=Operation(
        "Office locations I hold rights at (all of them for location, user and role managers).",
        lambda session, page, per_page: page_response(
            paginate(session, rights.visible_locations(session, current_identity()), page, per_page)
        ),
    ),
    create=Operation("Open an office location.", commands.create_location),
    read=Operation(
        "Read one office location (404 if I hold no rights there, as for an unknown one).",
        lambda session, location_id: rights.get_location(session, current_identity(), location_id),
    ),
    update=Operation("Rename or deactivate an office location.", commands.update_location),
)


# --- API keys ------------------------------------------------------------------------------------


@blp.route("/api-keys")
class ApiKeys(MethodView):
    @blp.read("api_keys.manage", ApiKeyPageSchema, query=PaginationArgs, query_kwargs=False)
    def get(self, args):
        """List API keys (never the keys themselves)."""
        return _page(select(ApiKey).order_by(ApiKey.id.desc()), args)

    @blp.create("api_keys.manage", ApiKeyCreatedSchema, body=ApiKeyCreateSchema)
    def post(self, data):
        """Create an API key with a subset of my permissions; the key is in this response only."""
        created = commands.create_key(context(), data)
        created.record.key = created.plaintext  # transient: dumped in this response only
        return (
            created.record,
            201,
            etag_headers(created.record, Location=url_for("access.ApiKeyItem", key_id=created.record.id)),
        )


@blp.route("/api-keys/<int:key_id>")
class ApiKeyItem(MethodView):
    @blp.read("api_keys.manage", ApiKeySchema)
    def get(self, key_id):
        """Read one API key's description and last use."""
        key = rights.get_api_key(db_session(), key_id)
        return key, 200, etag_headers(key)

    @at_version(blp, "api_keys.manage", refusals={403: "The key's creator holds rights you do not hold"})
    def delete(self, key_id):
        """Revoke an API key: it stops working at once (it stays listed, revoked).

        A key is its creator's credential: only they, or someone who may change their account
        (administrators only for an administrator's keys), revoke it."""
        commands.revoke_key(context(if_match()), key_id)
