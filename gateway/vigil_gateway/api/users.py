from __future__ import annotations

from flask import g, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from sqlalchemy import func, or_, select

from vigil_shared.errors import UNAUTHENTICATED, Problem, conflict
from vigil_shared.http import paginate
from vigil_shared.idempotency import idempotent
from vigil_shared.permissions import AUTHENTICATED, CATALOG
from vigil_shared.web import current_identity, requires

from .. import audit, rights
from ..context import database, db_session, passwords, signed_in_user
from ..identity_cache import bump
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
from ..tokens import revoke_sessions
from ..users import create_user, get_user, password_matches, replace_grants, set_password, would_remove_last_admin
from ..versions import claim_next_version, etag_headers

blp = Blueprint("users", __name__, url_prefix="/api/v1", description="Users, their roles, and who I am")


def _grant_view(user: User) -> list[dict]:
    return [{"role_id": grant.role_id, "location_id": grant.location_id} for grant in user.grants]


def _guard_privileges(data: dict) -> None:
    """Admin rights are given by admins only; grants by holders of roles.manage."""
    caller = signed_in_user()
    if "is_admin" in data and not rights.is_administrator(caller):
        raise Problem(403, "Only an administrator can grant or remove administrator rights.",
                      type="urn:vigil:problem:forbidden", errors={"is_admin": ["Not yours to set."]})
    if "grants" in data and not current_identity().has("roles.manage"):
        raise Problem(403, "Changing a user's roles needs the 'roles.manage' permission.",
                      type="urn:vigil:problem:forbidden", errors={"grants": ["Not yours to set."]},
                      permission="roles.manage")


@blp.route("/users")
class Users(MethodView):
    @requires("users.manage")
    @blp.arguments(UserListArgs, location="query", as_kwargs=True)
    @blp.response(200, UserPageSchema)
    def get(self, page, per_page, q=None, active=None):
        """List users."""
        statement = select(User).order_by(User.username)
        if q:
            pattern = f"%{q.lower()}%"
            statement = statement.where(or_(func.lower(User.username).like(pattern),
                                            func.lower(User.name).like(pattern),
                                            func.lower(User.email).like(pattern)))
        if active is not None:
            statement = statement.where(User.active.is_(active))
        result = paginate(db_session(), statement, page, per_page)
        return result.body(), 200, result.headers()

    @requires("users.manage")
    @idempotent
    @blp.arguments(UserCreateSchema)
    @blp.response(201, UserSchema)
    @blp.alt_response(409, description="The username is taken")
    def post(self, data):
        """Create a user, optionally with role grants (those need 'roles.manage')."""
        _guard_privileges(data)
        session = db_session()
        user = create_user(session, passwords(), data, current_identity())
        session.commit()
        audit.record(database(), "user.create", target_type="user", target_id=user.id,
                     details={"username": user.username, "is_admin": user.is_admin, "grants": _grant_view(user)})
        return user, 201, etag_headers(user, Location=url_for("users.UserItem", user_id=user.id))


@blp.route("/users/<int:user_id>")
class UserItem(MethodView):
    @requires("users.manage")
    @blp.response(200, UserSchema)
    def get(self, user_id):
        """Read one user with their role grants."""
        user = get_user(db_session(), user_id)
        return user, 200, etag_headers(user)

    @requires("users.manage")
    @blp.arguments(UserPatchSchema)
    @blp.response(200, UserSchema)
    @blp.alt_response(409, description="The change would leave no active administrator")
    @blp.alt_response(412, description="If-Match names an older version")
    def patch(self, changes, user_id):
        """Change a user. `active: false` ends every session of theirs at once; honours `If-Match`."""
        _guard_privileges(changes)
        session = db_session()
        user = get_user(session, user_id)
        rights.ensure_can_act_on(session, current_identity(), signed_in_user(), user)
        if would_remove_last_admin(session, user, changes):
            raise conflict("Vigil needs at least one active administrator.")
        claim_next_version(session, user)
        before = {"active": user.active, "is_admin": user.is_admin, "grants": _grant_view(user)}
        for field in ("email", "name", "active", "is_admin"):
            if field in changes:
                setattr(user, field, changes[field])
        if "grants" in changes:
            replace_grants(session, user, changes["grants"], current_identity())
        revoked = revoke_sessions(session, user.id) if before["active"] and not user.active else 0
        bump(session)  # rights may have changed: cached identities are resolved again
        session.commit()
        after = {"active": user.active, "is_admin": user.is_admin, "grants": _grant_view(user)}
        if revoked or (before["active"] and not user.active):
            audit.record(database(), "user.deactivate", target_type="user", target_id=user.id,
                         details={"sessions_revoked": revoked})
        if before["grants"] != after["grants"] or before["is_admin"] != after["is_admin"]:
            audit.record(database(), "user.rights_change", target_type="user", target_id=user.id,
                         details={"before": {k: before[k] for k in ("is_admin", "grants")},
                                  "after": {k: after[k] for k in ("is_admin", "grants")}})
        if set(changes) - {"grants", "is_admin", "active"} or before["active"] != after["active"]:
            audit.record(database(), "user.update", target_type="user", target_id=user.id,
                         details={"fields": sorted(changes)})
        return user, 200, etag_headers(user)


@blp.route("/users/<int:user_id>/password", methods=["POST"])
@requires("users.manage")
@idempotent
@blp.arguments(PasswordResetSchema)
@blp.response(204)
def reset_password(body, user_id):
    """Set a user's password (for a user who forgot theirs); ends their sessions.

    Only for a user whose every right the caller holds (administrators: by administrators only)."""
    session = db_session()
    user = get_user(session, user_id)
    rights.ensure_can_act_on(session, current_identity(), signed_in_user(), user)
    set_password(passwords(), user, body["password"])
    user.failed_logins, user.locked_until = 0, None
    revoked = revoke_sessions(session, user.id)
    session.commit()
    audit.record(database(), "user.password_reset", target_type="user", target_id=user.id,
                 details={"sessions_revoked": revoked})


@blp.route("/me", methods=["GET"])
@requires(AUTHENTICATED)
@blp.response(200, MeSchema)
def me():
    """Who I am and what I may do, company-wide and per office location."""
    identity = current_identity()
    user = signed_in_user()
    names = dict(db_session().execute(select(Location.id, Location.name)).all())
    return {
        "id": identity.subject, "username": identity.username, "kind": identity.kind,
        "name": user.name if user else None, "email": user.email if user else None,
        "is_admin": bool(user and user.is_admin), "permissions": sorted(identity.permissions),
        "locations": [{"location_id": loc, "name": names.get(loc), "permissions": sorted(perms)}
                      for loc, perms in sorted(identity.locations.items())],
    }


@blp.route("/me/password", methods=["POST"])
@requires(AUTHENTICATED)
@blp.arguments(PasswordChangeSchema)
@blp.response(204)
def change_my_password(body):
    """Change my own password; my other sessions end."""
    user = signed_in_user()
    if user is None:
        raise Problem(400, "API keys have no password.")
    if not password_matches(passwords(), user, body["current_password"]):
        audit.record(database(), "user.password_change", audit.FAILURE, target_type="user", target_id=user.id)
        raise Problem(401, "The current password is wrong.", type=UNAUTHENTICATED)
    session = db_session()
    set_password(passwords(), user, body["new_password"])
    revoked = revoke_sessions(session, user.id, keep=g.get("session_id"))
    session.commit()
    audit.record(database(), "user.password_change", target_type="user", target_id=user.id,
                 details={"other_sessions_revoked": revoked})


@blp.route("/permissions", methods=["GET"])
@requires(AUTHENTICATED)
@blp.response(200, PermissionSchema(many=True))
def permissions():
    """The permission catalog roles are built from."""
    return list(CATALOG)
