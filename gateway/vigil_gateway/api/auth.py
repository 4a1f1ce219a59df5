from __future__ import annotations

from flask import g, request
from flask_smorest import Blueprint

from vigil_shared.db import utcnow
from vigil_shared.errors import UNAUTHENTICATED, Problem
from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import requires

from .. import audit, login_guard
from ..context import database, db_session, passwords, settings
from ..identity_cache import bump
from ..models import Session
from ..schemas import RefreshRequestSchema, TokenRequestSchema, TokenSchema
from ..tokens import InvalidToken, RefreshReused, open_session, refresh_session
from ..users import find_user, password_matches, rehash_if_needed

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign-in, token refresh and logout")


def _refused(detail: str = "Invalid username or password.") -> Problem:
    return Problem(401, detail, type=UNAUTHENTICATED)


@blp.route("/token", methods=["POST"])
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="Wrong username or password, or the account is disabled")
@blp.alt_response(429,
                  description="Too many failed sign-ins (per username, per address) or account locked; see Retry-After")
@blp.doc(security=[])
def token(credentials):
    """Sign in: exchange a username and password for an access token and a refresh token."""
    config, session = settings(), db_session()
    username, address = credentials["username"], request.remote_addr
    user = find_user(session, username)
    try:
        login_guard.check(session, config.login_policy, username, address, user)
    except login_guard.Throttled as throttled:
        audit.record(database(), "auth.login", audit.DENIED, actor_name=username,
                     target_type="user", target_id=user.id if user else None, details={"reason": throttled.reason})
        raise
    if not password_matches(passwords(), user, credentials["password"]) or user is None or not user.active:
        locked = login_guard.record_failure(session, config.login_policy, username, address,
                                            user if user and user.active else None)
        session.commit()
        audit.record(database(), "auth.login", audit.FAILURE, actor_name=username,
                     target_type="user", target_id=user.id if user else None)
        if locked:
            audit.record(database(), "auth.lockout", audit.SUCCESS, actor_name=username, target_type="user",
                         target_id=user.id if user else None,
                         details={"seconds": config.login_policy.lockout_seconds})
        raise _refused()
    login_guard.record_success(session, user)
    rehash_if_needed(passwords(), user, credentials["password"])
    pair = open_session(session, user, secret=config.secret_key, access_ttl=config.access_token_ttl,
                        refresh_ttl=config.refresh_token_ttl, client_ip=address,
                        user_agent=request.headers.get("User-Agent"))
    session.commit()
    audit.record(database(), "auth.login", audit.SUCCESS, actor_name=user.username, target_type="user",
                 target_id=user.id)
    return pair.body()


@blp.route("/refresh", methods=["POST"])
@blp.arguments(RefreshRequestSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="Unknown, replaced, expired or revoked refresh token")
@blp.doc(security=[])
def refresh(body):
    """Trade a refresh token for a new pair; the old refresh token stops working."""
    config, session = settings(), db_session()
    try:
        pair, record, user = refresh_session(session, body["refresh_token"], secret=config.secret_key,
                                             access_ttl=config.access_token_ttl, refresh_ttl=config.refresh_token_ttl)
    except RefreshReused as reused:
        session.commit()
        audit.record(database(), "auth.refresh_reuse", audit.DENIED, target_type="session",
                     target_id=reused.session_id, details={"user_id": reused.user_id, "session_revoked": True})
        raise _refused("This refresh token was already used; the session has been closed. Sign in again.") from None
    except InvalidToken:
        raise _refused("The refresh token is invalid or expired. Sign in again.") from None
    session.commit()
    audit.record(database(), "auth.refresh", audit.SUCCESS, actor_name=user.username, target_type="session",
                 target_id=record.id)
    return pair.body()


@blp.route("/logout", methods=["POST"])
@requires(AUTHENTICATED)
@blp.response(204)
def logout():
    """End the current sign-in: its access and refresh tokens stop working at once."""
    session_id = g.get("session_id")
    if session_id is None:
        raise Problem(400, "API keys are revoked, not logged out: DELETE /api/v1/api-keys/{id}.")
    record = db_session().get(Session, session_id)
    assert record is not None, "the access token was just checked against its session"
    record.revoked_at = utcnow()
    bump(db_session())
    db_session().commit()
    audit.record(database(), "auth.logout", target_type="session", target_id=session_id)
