"""Every change the gateway makes to its own records (users, roles, locations, API keys, sessions), one command each.

A command takes the gateway's :class:`Context`, checks the caller's rights (``ctx.require`` and
:mod:`vigil_gateway.rights`), claims the record's next version against the caller's ``If-Match``,
and commits once (:func:`~vigil_shared.commands.command`); its audit entries are written once that
commit succeeded. Signing in and refreshing are not one transaction: a failed attempt is counted
(and committed) although the answer is a refusal.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from vigil_shared import commands
from vigil_shared.commands import command
from vigil_shared.db import Database, utcnow
from vigil_shared.errors import UNAUTHENTICATED, Problem, conflict

from . import audit, login_guard, rights
from .identity_cache import bump
from .models import Location, Role, Session, User
from .passwords import Passwords
from .settings import GatewaySettings, LoginPolicy
from .tokens import (
    InvalidToken,
    NewApiKey,
    RefreshReused,
    TokenPair,
    create_api_key,
    open_session,
    refresh_session,
    revoke_sessions,
)
from .users import create_user as _create_user
from .users import (
    find_user,
    get_user,
    password_matches,
    rehash_if_needed,
    replace_grants,
    set_password,
    would_remove_last_admin,
)
from .versions import claim_next_version

FORBIDDEN_TYPE = "urn:vigil:problem:forbidden"


@dataclass(frozen=True)
class Context(commands.Context):
    """The shared command context, with what the gateway's own checks read about the caller.

    ``user`` is the signed-in user (None for an API key); ``key_id`` and ``key_creator_id`` the key a
    call is made with and whose it is; ``session_id`` the sign-in. ``database`` receives the audit
    entries, ``passwords`` hashes passwords.
    """

    user: User | None = None
    key_id: int | None = None
    key_creator_id: int | None = None
    session_id: str | None = None
    # A request's context always has both (``api.common.context``); a test leaves out what its command never reads.
    database: Database = None  # type: ignore[assignment]
    passwords: Passwords = None  # type: ignore[assignment]

    def audit(self, action: str, outcome: str = audit.SUCCESS, **entry) -> None:
        """One audit entry by the caller once the command committed; ``entry`` values that are callables are
        read then."""

        def write():
            audit.record(
                self.database,
                action,
                outcome,
                actor=self.identity,
                **{key: value() if callable(value) else value for key, value in entry.items()},
            )

        self.after_commit(write)


def _grant_view(user: User) -> list[dict]:
    return [{"role_id": grant.role_id, "location_id": grant.location_id} for grant in user.grants]


def _guard_privileges(ctx: Context, data: dict) -> None:
    """Admin rights are given by admins only; grants by holders of roles.manage."""
    if "is_admin" in data and not rights.is_administrator(ctx.user):
        raise Problem(
            403,
            "Only an administrator can grant or remove administrator rights.",
            type=FORBIDDEN_TYPE,
            errors={"is_admin": ["Not yours to set."]},
        )
    if "grants" in data and not ctx.identity.has("roles.manage"):
        raise Problem(
            403,
            "Changing a user's roles needs the 'roles.manage' permission.",
            type=FORBIDDEN_TYPE,
            errors={"grants": ["Not yours to set."]},
            permission="roles.manage",
        )


# --- users --------------------------------------------------------------------------------------------


@command
def create_user(ctx: Context, data: dict) -> User:
    """A user, optionally with role grants (those need ``roles.manage``)."""
    ctx.require("users.manage")
    _guard_privileges(ctx, data)
    user = _create_user(ctx.session, ctx.passwords, data, ctx.identity)
    ctx.audit(
        "user.create",
        target_type="user",
        target_id=lambda: user.id,
        details=lambda: {"username": user.username, "is_admin": user.is_admin, "grants": _grant_view(user)},
    )
    return user


@command
def update_user(ctx: Context, user_id: int, changes: dict) -> User:
    """Changes a user; ``active: false`` ends every session of theirs at once."""
    ctx.require("users.manage")
    _guard_privileges(ctx, changes)
    session = ctx.session
    user = get_user(session, user_id)
    rights.ensure_can_act_on(session, ctx.identity, ctx.user, user)
    # Rights may change: cached identities are resolved again. First, because the row it writes makes
    # changes to users take turns (PostgreSQL's row lock, SQLite's one writer): the last-administrator
    # rule below then counts what the others committed. Counted before it, two administrators
    # deactivating each other at once each saw the other active, and both went through.
    bump(session)
    if would_remove_last_admin(session, user, changes):
        raise conflict("Vigil needs at least one active administrator.")
    claim_next_version(session, user, ctx.if_match)
    before = {"active": user.active, "is_admin": user.is_admin, "grants": _grant_view(user)}
    for field in ("email", "name", "active", "is_admin"):
        if field in changes:
            setattr(user, field, changes[field])
    if "grants" in changes:
        replace_grants(session, user, changes["grants"], ctx.identity)
    revoked = revoke_sessions(session, user.id) if before["active"] and not user.active else 0

    def audit_changes():
        after = {"active": user.active, "is_admin": user.is_admin, "grants": _grant_view(user)}
        record = partial(audit.record, ctx.database, actor=ctx.identity, target_type="user", target_id=user.id)
        if revoked or (before["active"] and not user.active):
            record("user.deactivate", details={"sessions_revoked": revoked})
        if before["grants"] != after["grants"] or before["is_admin"] != after["is_admin"]:
            rights = ("is_admin", "grants")
            record(
                "user.rights_change",
                details={"before": {k: before[k] for k in rights}, "after": {k: after[k] for k in rights}},
            )
        if set(changes) - {"grants", "is_admin", "active"} or before["active"] != after["active"]:
            audit.record(
                ctx.database,
                "user.update",
                actor=ctx.identity,
                target_type="user",
                target_id=user.id,
                details={"fields": sorted(changes)},
            )

    ctx.after_commit(audit_changes)
    return user


@command
def reset_password(ctx: Context, user_id: int, password: str) -> None:
    """Sets a user's password and ends their sessions; only for a user whose every right the caller holds."""
    ctx.require("users.manage")
    user = get_user(ctx.session, user_id)
    rights.ensure_can_act_on(ctx.session, ctx.identity, ctx.user, user)
    set_password(ctx.passwords, user, password)
    user.failed_logins, user.locked_until = 0, None
    revoked = revoke_sessions(ctx.session, user.id)
    ctx.audit("user.password_reset", target_type="user", target_id=user_id, details={"sessions_revoked": revoked})


def change_my_password(
    ctx: Context,
    current_password: str,
    new_password: str,
    policy: LoginPolicy | None = None,
    address: str | None = None,
) -> None:
    """Changes the signed-in user's own password; their other sessions end. A wrong current password
    is audited as a failure and answers 401.

    The current password is checked under ``policy`` exactly as a sign-in is (:mod:`login_guard`: per
    username, per address, the account's lockout), and a wrong one counts as a failed sign-in: whoever
    holds a stolen session must not guess the password here faster than at ``/auth/token``, since the
    password outlives the session it was guessed with."""
    user = ctx.user
    if user is None:
        raise Problem(400, "API keys have no password.")
    if policy is not None:
        login_guard.check(ctx.session, policy, user.username, address, user)
    if not password_matches(ctx.passwords, user, current_password):
        if policy is not None:
            locked = login_guard.record_failure(ctx.session, policy, user.username, address, user)
            ctx.session.commit()
            if locked:
                audit.record(
                    ctx.database,
                    "auth.lockout",
                    audit.SUCCESS,
                    actor_name=user.username,
                    target_type="user",
                    target_id=user.id,
                    details={"seconds": policy.lockout_seconds},
                )
        audit.record(
            ctx.database,
            "user.password_change",
            audit.FAILURE,
            actor=ctx.identity,
            target_type="user",
            target_id=user.id,
        )
        raise Problem(401, "The current password is wrong.", type=UNAUTHENTICATED)
    _set_my_password(ctx, user, new_password)


@command
def _set_my_password(ctx: Context, user: User, new_password: str) -> None:
    set_password(ctx.passwords, user, new_password)
    revoked = revoke_sessions(ctx.session, user.id, keep=ctx.session_id)
    ctx.audit(
        "user.password_change", target_type="user", target_id=user.id, details={"other_sessions_revoked": revoked}
    )


# --- roles --------------------------------------------------------------------------------------------


@command
def create_role(ctx: Context, data: dict) -> Role:
    """A role: a named set of permissions from the catalog, each one the caller may give."""
    ctx.require("roles.manage")
    rights.check_role_name_free(ctx.session, data["name"])
    rights.ensure_can_set_role_permissions(ctx.session, ctx.identity, None, data["permissions"])
    role = Role(name=data["name"], description=data.get("description"), permissions=sorted(set(data["permissions"])))
    ctx.session.add(role)
    ctx.audit(
        "role.create",
        target_type="role",
        target_id=lambda: role.id,
        details=lambda: {"name": role.name, "permissions": role.permissions},
    )
    return role


@command
def update_role(ctx: Context, role_id: int, changes: dict) -> Role:
    """Changes a role; every holder's rights change with it on their next call."""
    ctx.require("roles.manage")
    session = ctx.session
    role = rights.get_role(session, role_id)
    claim_next_version(session, role, ctx.if_match)
    before = list(role.permissions)
    if "name" in changes:
        rights.check_role_name_free(session, changes["name"], exclude=role.id)
        role.name = changes["name"]
    if "description" in changes:
        role.description = changes["description"]
    if "permissions" in changes:
        rights.ensure_can_set_role_permissions(session, ctx.identity, role, changes["permissions"])
        role.permissions = sorted(set(changes["permissions"]))
    bump(session)
    ctx.audit(
        "role.update",
        target_type="role",
        target_id=role_id,
        details=lambda: {
            "fields": sorted(changes),
            "permissions_before": before,
            "permissions_after": role.permissions,
        },
    )
    return role


@command
def delete_role(ctx: Context, role_id: int) -> None:
    """Deletes a role no one holds any more."""
    ctx.require("roles.manage")
    role = rights.get_role(ctx.session, role_id)
    claim_next_version(ctx.session, role, ctx.if_match)
    rights.delete_role(ctx.session, role)
    bump(ctx.session)
    ctx.audit("role.delete", target_type="role", target_id=role_id, details={"name": role.name})


# --- office locations ---------------------------------------------------------------------------------


@command
def create_location(ctx: Context, data: dict) -> Location:
    ctx.require("locations.manage")
    rights.check_location_name_free(ctx.session, data["name"])
    location = Location(**({"active": True} | data))
    ctx.session.add(location)
    bump(ctx.session)
    ctx.audit(
        "location.create",
        target_type="location",
        target_id=lambda: location.id,
        details=lambda: {"name": location.name},
    )
    return location


@command
def update_location(ctx: Context, location_id: int, changes: dict) -> Location:
    """Renames or deactivates an office location."""
    ctx.require("locations.manage")
    location = rights.get_location(ctx.session, ctx.identity, location_id)
    claim_next_version(ctx.session, location, ctx.if_match)
    if "name" in changes:
        rights.check_location_name_free(ctx.session, changes["name"], exclude=location.id)
    for field, value in changes.items():
        setattr(location, field, value)
    bump(ctx.session)
    ctx.audit("location.update", target_type="location", target_id=location_id, details={"fields": sorted(changes)})
    return location


# --- API keys -----------------------------------------------------------------------------------------


@command
def create_key(ctx: Context, data: dict) -> NewApiKey:
    """An API key with a subset of the caller's rights; its plaintext is in the answer only."""
    ctx.require("api_keys.manage")
    rights.check_api_key_rights(ctx.session, ctx.identity, data["permissions"], data["location_ids"])
    # A key made with a key answers to the same person: its rights stay bounded by theirs.
    creator = ctx.user.id if ctx.user else ctx.key_creator_id
    # ...and to the key it was made with: it stops when that key is revoked or expires.
    created = create_api_key(
        ctx.session,
        name=data["name"],
        permissions=data["permissions"],
        location_ids=data["location_ids"],
        created_by=creator,
        expires_at=data["expires_at"],
        made_with_key_id=None if ctx.user else ctx.key_id,
    )
    record = created.record
    ctx.audit(
        "api_key.create",
        target_type="api_key",
        target_id=lambda: record.id,
        details=lambda: {"name": record.name, "permissions": record.permissions, "location_ids": record.location_ids},
    )
    return created


@command
def revoke_key(ctx: Context, key_id: int) -> None:
    """Revokes an API key at once (it stays listed, revoked): only its creator, or someone who may change
    their account (administrators only for an administrator's keys)."""
    ctx.require("api_keys.manage")
    key = rights.get_api_key(ctx.session, key_id)
    rights.ensure_can_revoke(ctx.session, ctx.identity, ctx.user, key, ctx.key_creator_id)
    if key.revoked_at is None:
        claim_next_version(ctx.session, key, ctx.if_match)
        key.revoked_at = utcnow()
        bump(ctx.session)
        ctx.audit("api_key.revoke", target_type="api_key", target_id=key_id, details={"name": key.name})


# --- signing in and out -------------------------------------------------------------------------------


def _refused(detail: str = "Invalid username or password.") -> Problem:
    return Problem(401, detail, type=UNAUTHENTICATED)


def sign_in(
    session,
    config: GatewaySettings,
    database: Database,
    passwords: Passwords,
    credentials: dict,
    address: str | None,
    user_agent: str | None,
) -> TokenPair:
    """An access and a refresh token for a username and password; 401/429 otherwise. A failure is counted
    and committed before the refusal, so throttling and lockout hold across attempts."""
    username = credentials["username"]
    user = find_user(session, username)
    attempt = partial(
        audit.record,
        database,
        "auth.login",
        actor_name=username,
        target_type="user",
        target_id=user.id if user else None,
    )
    try:
        login_guard.check(session, config.login_policy, username, address, user)
    except login_guard.Throttled as throttled:
        attempt(audit.DENIED, details={"reason": throttled.reason})
        raise
    if not password_matches(passwords, user, credentials["password"]) or user is None or not user.active:
        locked = login_guard.record_failure(
            session, config.login_policy, username, address, user if user and user.active else None
        )
        session.commit()
        attempt(audit.FAILURE)
        if locked:
            assert user is not None  # record_failure locks a known user only
            audit.record(
                database,
                "auth.lockout",
                audit.SUCCESS,
                actor_name=username,
                target_type="user",
                target_id=user.id,
                details={"seconds": config.login_policy.lockout_seconds},
            )
        raise _refused()
    login_guard.record_success(session, user)
    rehash_if_needed(passwords, user, credentials["password"])
    pair = open_session(
        session,
        user,
        secret=config.secret_key,
        access_ttl=config.access_token_ttl,
        refresh_ttl=config.refresh_token_ttl,
        client_ip=address,
        user_agent=user_agent,
    )
    session.commit()
    audit.record(database, "auth.login", audit.SUCCESS, actor_name=user.username, target_type="user", target_id=user.id)
    return pair


def refresh_tokens(session, config: GatewaySettings, database: Database, refresh_token: str) -> TokenPair:
    """A new pair for a refresh token, which stops working; a reused one closes its session (committed) and 401s."""
    try:
        pair, record, user = refresh_session(
            session,
            refresh_token,
            secret=config.secret_key,
            access_ttl=config.access_token_ttl,
            refresh_ttl=config.refresh_token_ttl,
        )
    except RefreshReused as reused:
        session.commit()
        audit.record(
            database,
            "auth.refresh_reuse",
            audit.DENIED,
            target_type="session",
            target_id=reused.session_id,
            details={"user_id": reused.user_id, "session_revoked": True},
        )
        raise _refused("This refresh token was already used; the session has been closed. Sign in again.") from None
    except InvalidToken:
        raise _refused("The refresh token is invalid or expired. Sign in again.") from None
    session.commit()
    audit.record(
        database, "auth.refresh", audit.SUCCESS, actor_name=user.username, target_type="session", target_id=record.id
    )
    return pair


@command
def log_out(ctx: Context) -> None:
    """Ends the current sign-in: its access and refresh tokens stop working at once."""
    if ctx.session_id is None:
        raise Problem(400, "API keys are revoked, not logged out: DELETE /api/v1/api-keys/{id}.")
    record = ctx.session.get(Session, ctx.session_id)
    assert record is not None  # the caller was authenticated with it, and sign-ins are revoked, never deleted
    record.revoked_at = utcnow()
    bump(ctx.session)
    ctx.audit("auth.logout", target_type="session", target_id=ctx.session_id)
