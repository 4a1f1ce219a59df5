"""Access tokens handed to callers by ``POST /api/v1/auth/token``."""
from __future__ import annotations

import time
import uuid

import jwt

ISSUER = "vigil-gateway"
AUDIENCE = "vigil-api"


class InvalidToken(Exception):
    pass


def issue_access_token(user_id: int, username: str, secret: str, ttl: int) -> str:
    now = int(time.time())
    return jwt.encode({"sub": str(user_id), "name": username, "typ": "access", "iss": ISSUER, "aud": AUDIENCE,
                       "iat": now, "exp": now + ttl, "jti": uuid.uuid4().hex}, secret, algorithm="HS256")


def verify_access_token(token: str, secret: str) -> dict:
    try:
        claims = jwt.decode(token, secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
                            options={"require": ["exp", "iat", "sub", "jti"]})
    except jwt.PyJWTError as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("typ") != "access":
        raise InvalidToken("not an access token")
    return claims
