"""Roles, office locations and API keys."""

from __future__ import annotations

from flask import url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import select

from vigil_shared.http import PaginationArgs, paginate
from vigil_shared.idempotency import idempotent
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import current_identity, requires

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
from .common import context, if_match

blp = Blueprint("access", __name__, url_prefix="/api/v1", description="Roles, office locations and API keys")


def _page(statement, args):
    result = paginate(db_session(), statement, args["page"], args["per_page"])
    return result.body(), 200, result.headers()


# --- roles ---------------------------------------------------------------------------------------


@blp.route("/roles")
class Roles(MethodView):
    @requires("roles.manage")
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, RolePageSchema)
    def get(self, args):
        """List roles."""
        return _page(select(Role).order_by(Role.name), args)

    @requires("roles.manage")
    @idempotent
    @blp.arguments(RoleCreateSchema)
    @blp.response(201, RoleSchema)
    def post(self, data):
        """Create a role: a named set of permissions from the catalog."""
        role = commands.create_role(context(), data)
        return role, 201, etag_headers(role, Location=url_for("access.RoleItem", role_id=role.id))


@blp.route("/roles/<int:role_id>")
class RoleItem(MethodView):
    @requires("roles.manage")
    @blp.response(200, RoleSchema)
    def get(self, role_id):
        """Read one role."""
        role = rights.get_role(db_session(), role_id)
        return role, 200, etag_headers(role)

    @requires("roles.manage")
    @blp.arguments(RolePatchSchema)
    @blp.response(200, RoleSchema)
    @blp.alt_response(412, description="If-Match names an older version")
    def patch(self, changes, role_id):
        """Change a role; every holder's rights change with it on their next call."""
        role = commands.update_role(context(if_match()), role_id, changes)
        return role, 200, etag_headers(role)

    @requires("roles.manage")
    @blp.response(204)
    @blp.alt_response(409, description="Users still hold this role")
    @blp.alt_response(412, description="If-Match names an older version")
    def delete(self, role_id):
        """Delete a role no one holds any more."""
        commands.delete_role(context(if_match()), role_id)


# --- locations -----------------------------------------------------------------------------------


@blp.route("/locations")
class Locations(MethodView):
    @requires(AUTHENTICATED)
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, LocationPageSchema)
    def get(self, args):
        """Office locations I hold rights at (all of them for location, user and role managers)."""
        return _page(rights.visible_locations(db_session(), current_identity()), args)

    @requires("locations.manage")
    @idempotent
    @blp.arguments(LocationCreateSchema)
    @blp.response(201, LocationSchema)
    def post(self, data):
        """Open an office location."""
        location = commands.create_location(context(), data)
        return location, 201, etag_headers(location, Location=url_for("access.LocationItem", location_id=location.id))


@blp.route("/locations/<int:location_id>")
class LocationItem(MethodView):
    @requires(AUTHENTICATED)
    @blp.response(200, LocationSchema)
    def get(self, location_id):
        """Read one office location (403 if I hold no rights there)."""
        location = rights.get_location(db_session(), current_identity(), location_id)
        return location, 200, etag_headers(location)

    @requires("locations.manage")
    @blp.arguments(LocationPatchSchema)
    @blp.response(200, LocationSchema)
    @blp.alt_response(412, description="If-Match names an older version")
    def patch(self, changes, location_id):
        """Rename or deactivate an office location."""
        location = commands.update_location(context(if_match()), location_id, changes)
        return location, 200, etag_headers(location)


# --- API keys ------------------------------------------------------------------------------------


@blp.route("/api-keys")
class ApiKeys(MethodView):
    @requires("api_keys.manage")
    @blp.arguments(PaginationArgs, location="query")
    @blp.response(200, ApiKeyPageSchema)
    def get(self, args):
        """List API keys (never the keys themselves)."""
        return _page(select(ApiKey).order_by(ApiKey.id.desc()), args)

    @requires("api_keys.manage")
    @idempotent
    @blp.arguments(ApiKeyCreateSchema)
    @blp.response(201, ApiKeyCreatedSchema)
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
    @requires("api_keys.manage")
    @blp.response(200, ApiKeySchema)
    def get(self, key_id):
        """Read one API key's description and last use."""
        key = rights.get_api_key(db_session(), key_id)
        return key, 200, etag_headers(key)

    @requires("api_keys.manage")
    @blp.response(204)
    @blp.alt_response(403, description="The key's creator holds rights you do not hold")
    @blp.alt_response(412, description="If-Match names an older version")
    def delete(self, key_id):
        """Revoke an API key: it stops working at once (it stays listed, revoked).

        A key is its creator's credential: only they, or someone who may change their account
        (administrators only for an administrator's keys), revoke it."""
        commands.revoke_key(context(if_match()), key_id)
