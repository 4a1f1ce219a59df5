from __future__ import annotations

from flask import request
from flask_smorest import Blueprint

from vigil_shared.permissions import AUTHENTICATED
from vigil_shared.web import requires

from .. import commands
from ..context import database, db_session, passwords, settings
from ..schemas import RefreshRequestSchema, TokenRequestSchema, TokenSchema
from .common import context

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Sign-in, token refresh and logout")


@blp.route("/token", methods=["POST"])
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="Wrong username or password, or the account is disabled")
@blp.alt_response(
    429, description="Too many failed sign-ins (per username, per address) or account locked; see Retry-After"
)
@blp.doc(security=[])
def token(credentials):
    """Sign in: exchange a username and password for an access token and a refresh token."""
    return commands.sign_in(
        db_session(),
        settings(),
        database(),
        passwords(),
        credentials,
        request.remote_addr,
        request.headers.get("User-Agent"),
    ).body()


@blp.route("/refresh", methods=["POST"])
@blp.arguments(RefreshRequestSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="Unknown, replaced, expired or revoked refresh token")
@blp.doc(security=[])
def refresh(body):
    """Trade a refresh token for a new pair; the old refresh token stops working."""
    return commands.refresh_tokens(db_session(), settings(), database(), body["refresh_token"]).body()


@blp.route("/logout", methods=["POST"])
@requires(AUTHENTICATED)
@blp.response(204)
def logout():
    """End the current sign-in: its access and refresh tokens stop working at once."""
    commands.log_out(context())
