"""Request and response shapes of the gateway's own API (identity, access, audit)."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates

from vigil_shared.alike import alike
from vigil_shared.fields import Timestamp, TrimmedString
from vigil_shared.http import PaginationArgs, page_schema
from vigil_shared.permissions import ALL_PERMISSIONS

USERNAME = validate.Regexp(r"^[A-Za-z0-9_.@-]{3,150}$", error="3 to 150 letters, digits or _ . @ -")
PASSWORD = validate.Length(min=12, max=1024, error="Use 12 to 1024 characters.")


def _known_permissions(values: list[str]) -> None:
    unknown = sorted(set(values) - ALL_PERMISSIONS)
    if unknown:
        raise ValidationError(f"Not in the permission catalog: {', '.join(unknown)}.")


# --- auth ----------------------------------------------------------------------------------------


class TokenRequestSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=150))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))


class RefreshRequestSchema(Schema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=10, max=300))


class TokenSchema(Schema):
    access_token, refresh_token = alike(2, fields.String, required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds until the access token expires"})


# --- permissions, locations, roles ---------------------------------------------------------------


class PermissionSchema(Schema):
    name = fields.String()
    scope = fields.String(metadata={"description": "`location` (granted per office) or `global`"})
    group, description = alike(2, fields.String)


class LocationSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String()
    address, phone = alike(2, fields.String, allow_none=True)
    active = fields.Boolean()
    created_at, updated_at = alike(2, Timestamp, dump_only=True)


class LocationCreateSchema(Schema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=120))
    address = TrimmedString(allow_none=True, validate=validate.Length(max=300))
    phone = TrimmedString(allow_none=True, validate=validate.Length(max=40))
    active = fields.Boolean()


class LocationPatchSchema(LocationCreateSchema):
    name = TrimmedString(validate=validate.Length(min=1, max=120))


class RoleSchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String()
    description = fields.String(allow_none=True)
    permissions = fields.List(fields.String())
    created_at, updated_at = alike(2, Timestamp, dump_only=True)


class RoleCreateSchema(Schema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=120))
    description = fields.String(allow_none=True, validate=validate.Length(max=2000))
    permissions = fields.List(fields.String(), required=True, validate=_known_permissions)


class RolePatchSchema(RoleCreateSchema):
    name = TrimmedString(validate=validate.Length(min=1, max=120))
    permissions = fields.List(fields.String(), validate=_known_permissions)


# --- users ---------------------------------------------------------------------------------------


class GrantSchema(Schema):
    role_id = fields.Integer(required=True)
    location_id = fields.Integer(
        allow_none=True, load_default=None, metadata={"description": "null: the role holds at every location"}
    )
    role_name = fields.Function(lambda grant: grant.role.name, dump_only=True)


class UserSchema(Schema):
    id = fields.Integer(dump_only=True)
    username = fields.String()
    email, name = alike(2, fields.String, allow_none=True)
    active, is_admin = alike(2, fields.Boolean)
    locked_until = Timestamp(allow_none=True)
    grants = fields.List(fields.Nested(GrantSchema))
    created_at, updated_at = alike(2, Timestamp, dump_only=True)


class UserCreateSchema(Schema):
    username = fields.String(required=True, validate=USERNAME)
    password = fields.String(required=True, load_only=True, validate=PASSWORD)
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    name = TrimmedString(allow_none=True, validate=validate.Length(max=200))
    active = fields.Boolean()
    is_admin = fields.Boolean(metadata={"description": "Every permission in every location; only admins set it"})
    grants = fields.List(fields.Nested(GrantSchema), validate=validate.Length(max=500))


class UserPatchSchema(Schema):
    email = fields.Email(allow_none=True, validate=validate.Length(max=254))
    name = TrimmedString(allow_none=True, validate=validate.Length(max=200))
    active = fields.Boolean(metadata={"description": "false deactivates the user and ends every session at once"})
    is_admin = fields.Boolean()
    grants = fields.List(fields.Nested(GrantSchema), validate=validate.Length(max=500))


class PasswordResetSchema(Schema):
    password = fields.String(required=True, load_only=True, validate=PASSWORD)


class PasswordChangeSchema(Schema):
    current_password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))
    new_password = fields.String(required=True, load_only=True, validate=PASSWORD)


class UserListArgs(PaginationArgs):
    q = TrimmedString(validate=validate.Length(max=150))
    active = fields.Boolean()


class LocationRightsSchema(Schema):
    location_id = fields.Integer()
    name = fields.String()
    permissions = fields.List(fields.String())


class MeSchema(Schema):
    id, username = alike(2, fields.String)
    kind = fields.String(metadata={"description": "`user` or `api_key`"})
    name, email = alike(2, fields.String, allow_none=True)
    is_admin = fields.Boolean()
    permissions = fields.List(fields.String(), metadata={"description": "Company-wide permissions"})
    locations = fields.List(
        fields.Nested(LocationRightsSchema), metadata={"description": "Effective permissions per office location"}
    )


# --- API keys ------------------------------------------------------------------------------------


class ApiKeySchema(Schema):
    id = fields.Integer(dump_only=True)
    name = fields.String()
    prefix = fields.String(metadata={"description": "Public part of the key, to recognise it"})
    permissions = fields.List(fields.String())
    location_ids = fields.List(fields.Integer(), allow_none=True)
    created_by = fields.Integer(allow_none=True)
    made_with_key_id = fields.Integer(
        allow_none=True,
        metadata={
            "description": "The key this one was made with; it stops working when that one is revoked or expires"
        },
    )
    created_at = Timestamp()
    expires_at, last_used_at, revoked_at = alike(3, Timestamp, allow_none=True)


class ApiKeyCreatedSchema(ApiKeySchema):
    key = fields.String(metadata={"description": "The key itself: shown this once, never again"})


class ApiKeyCreateSchema(Schema):
    name = TrimmedString(required=True, validate=validate.Length(min=1, max=120))
    permissions = fields.List(fields.String(), required=True, validate=[validate.Length(min=1), _known_permissions])
    location_ids = fields.List(
        fields.Integer(), allow_none=True, load_default=None, metadata={"description": "null: every location"}
    )
    expires_at = Timestamp(allow_none=True, load_default=None)

    @validates("location_ids")
    def _unique(self, value, **_):
        if value is not None and len(set(value)) != len(value):
            raise ValidationError("Each location once.")


# --- audit ---------------------------------------------------------------------------------------


class AuditEntrySchema(Schema):
    id = fields.Integer()
    occurred_at = Timestamp()
    actor_id, actor_name, actor_kind, client_ip, request_id = alike(5, fields.String, allow_none=True)
    action, outcome = alike(2, fields.String)
    target_type, target_id = alike(2, fields.String, allow_none=True)
    details = fields.Dict(allow_none=True)


class AuditArgs(PaginationArgs):
    actor = fields.String(validate=validate.Length(max=150))
    action = fields.String(
        validate=validate.Length(max=80), metadata={"description": "Exact action, or a prefix ending in `*` (`auth.*`)"}
    )
    outcome = fields.String(validate=validate.OneOf(["success", "failure", "denied"]))
    target_type = fields.String(validate=validate.Length(max=40))
    target_id = fields.String(validate=validate.Length(max=64))
    since = Timestamp(data_key="from")
    until = Timestamp(data_key="to")


UserPageSchema = page_schema(UserSchema, "UserPage")
RolePageSchema = page_schema(RoleSchema, "RolePage")
LocationPageSchema = page_schema(LocationSchema, "LocationPage")
ApiKeyPageSchema = page_schema(ApiKeySchema, "ApiKeyPage")
AuditPageSchema = page_schema(AuditEntrySchema, "AuditPage")
