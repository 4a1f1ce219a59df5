from __future__ import annotations

from flask import current_app
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate

from vigil_shared.errors import Problem, UNAUTHENTICATED

from ..tokens import issue_access_token
from ..users import authenticate

blp = Blueprint("auth", __name__, url_prefix="/api/v1/auth", description="Authentication")


class TokenRequestSchema(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=150))
    password = fields.String(required=True, load_only=True, validate=validate.Length(min=1, max=1024))


class TokenSchema(Schema):
    access_token = fields.String(required=True)
    token_type = fields.String(required=True, metadata={"example": "Bearer"})
    expires_in = fields.Integer(required=True, metadata={"description": "Seconds until the token expires"})


@blp.route("/token", methods=["POST"])
@blp.arguments(TokenRequestSchema)
@blp.response(200, TokenSchema)
@blp.alt_response(401, description="Wrong username or password, or the account is disabled")
@blp.doc(security=[])
def token(credentials):
    """Exchange a username and password for a bearer access token."""
    settings = current_app.extensions["vigil_gateway_settings"]
    session = current_app.extensions["vigil_gateway_db"].request_session()
    user = authenticate(session, credentials["username"], credentials["password"])
    if user is None:
        raise Problem(401, "Invalid username or password.", type=UNAUTHENTICATED)
    session.commit()  # keeps a password rehash, if Argon2 parameters changed
    return {"access_token": issue_access_token(user.id, user.username, settings.secret_key, settings.access_token_ttl),
            "token_type": "Bearer", "expires_in": settings.access_token_ttl}
