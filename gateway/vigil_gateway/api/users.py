from __future__ import annotations

from flask import request, url_for
from flask.views import MethodView
from sqlalchemy import func, or_, select

from vigil_shared.endpoints import Blueprint
from vigil_shared.http import paginate
from vigil_shared.permissions import AUTHENTICATED, CATALOG
from vigil_shared.web import current_identity

from .. import commands
from ..context import db_session, settings, signed_in_user
from ..models import Location, User
from ..schemas import (
    MeSchema,
    PasswordChangeSchema,
    PasswordResetSchema,
    PermissionSchema,
    UserCreateSchema,
    UserListArgs,
    UserPageSchema,
    UserPatchSchema,
    UserSchema,
)
from ..users import get_user
from ..versions import etag_headers
from .common import at_version, context, if_match

blp = Blueprint("users", __name__, url_prefix="/api/v1", description="Users, their roles, and who I am")


@blp.route("/users")
class Users(MethodView):
    @blp.read("users.manage", UserPageSchema, query=UserListArgs)
    def get(self, page, per_page, q=None, active=None):
        """List users."""
        statement = select(User).order_by(User.username)
        if q:
            pattern = f"%{q.lower()}%"
            statement = statement.where(
                or_(
                    func.lower(User.username).like(pattern),
                    func.lower(User.name).like(pattern),
                    func.lower(User.email).like(pattern),
                )
            )
        if active is not None:
            statement = statement.where(User.active.is_(active))
        result = paginate(db_session(), statement, page, per_page)
        return result.body(), 200, result.headers()

    @blp.create("users.manage", UserSchema, body=UserCreateSchema, conflict="The username is taken")
    def post(self, data):
        """Create a user, optionally with role grants (those need 'roles.manage')."""
        user = commands.create_user(context(), data)
        return user, 201, etag_headers(user, Location=url_for("users.UserItem", user_id=user.id))


@blp.route("/users/<int:user_id>")
class UserItem(MethodView):
    @blp.read("users.manage", UserSchema)
    def get(self, user_id):
        """Read one user with their role grants."""
        user = get_user(db_session(), user_id)
        return user, 200, etag_headers(user)

    @at_version(
        blp,
        "users.manage",
        UserPatchSchema,
        UserSchema,
        refusals={409: "The change would leave no active administrator"},
    )
    def patch(self, changes, user_id):
        """Change a user. `active: false` ends every session of theirs at once; honours `If-Match`."""
        user = commands.update_user(context(if_match()), user_id, changes)
        return user, 200, etag_headers(user)


@blp.route("/users/<int:user_id>/password", methods=["POST"])
@blp.action("users.manage", status=204, body=PasswordResetSchema)
def reset_password(body, user_id):
    """Set a user's password (for a user who forgot theirs); ends their sessions.

    Only for a user whose every right the caller holds (administrators: by administrators only)."""
    commands.reset_password(context(), user_id, body["password"])


@blp.route("/me", methods=["GET"])
@blp.read(AUTHENTICATED, MeSchema)
def me():
    """Who I am and what I may do, company-wide and per office location."""
    identity = current_identity()
    user = signed_in_user()
    names = dict(db_session().execute(select(Location.id, Location.name)).all())
    return {
        "id": identity.subject,
        "username": identity.username,
        "kind": identity.kind,
        "name": user.name if user else None,
        "email": user.email if user else None,
        "is_admin": bool(user and user.is_admin),
        "permissions": sorted(identity.permissions),
        "locations": [
            {"location_id": loc, "name": names.get(loc), "permissions": sorted(perms)}
            for loc, perms in sorted(identity.locations.items())
        ],
    }


@blp.route("/me/password", methods=["POST"])
@blp.operation(
    AUTHENTICATED,
    status=204,
    body=PasswordChangeSchema,
    answers={429: "Too many wrong current passwords: throttled like failed sign-ins (with `Retry-After`)"},
)
def change_my_password(body):
    """Change my own password; my other sessions end."""
    policy = settings().login_policy
    commands.change_my_password(context(), body["current_password"], body["new_password"], policy, request.remote_addr)


@blp.route("/permissions", methods=["GET"])
@blp.read(AUTHENTICATED, PermissionSchema(many=True))
def permissions():
    """The permission catalog roles are built from."""
    return list(CATALOG)
