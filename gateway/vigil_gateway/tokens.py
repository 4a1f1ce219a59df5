"""Sign-in sessions and their tokens.

- The access token is a short-lived JWT naming the user and the session (``sid``); the gateway
  checks on every call that the session is still open and the user still active, so logging out,
  deactivating a user or changing a password takes effect at once.
- The refresh token (``vrt_<session>.<secret>``) is opaque, stored as a SHA-256 hash, and replaced
  on every use. Presenting a replaced one again means it was copied: the whole session is revoked.
- API keys (``vgk_<prefix>.<secret>``) are long-lived credentials for integrations, also stored hashed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

from sqlalchemy import CursorResult, select, update
from sqlalchemy.orm import Session as DbSession

from vigil_shared import hs256
from vigil_shared.db import utcnow
from vigil_shared.identity import decode_token

from .identity_cache import bump
from .models import ApiKey, Session, User

ISSUER = "vigil-gateway"
AUDIENCE = "vigil-api"
REFRESH_PREFIX = "vrt_"
API_KEY_PREFIX = "vgk_"


class InvalidToken(Exception):
    pass


def _hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _same(a: str, b: str | None) -> bool:
    return b is not None and hmac.compare_digest(a, b)


def issue_access_token(user_id: int, username: str, session_id: str, secret: str, ttl: int) -> str:
    now = int(time.time())
    return hs256.encode(
        {
            "sub": str(user_id),
            "name": username,
            "sid": session_id,
            "typ": "access",
            "iss": ISSUER,
            "aud": AUDIENCE,
            "iat": now,
            "exp": now + ttl,
            "jti": uuid.uuid4().hex,
        },
        secret,
    )


_verified: dict[str, dict] = {}  # token → its claims: a token's signature is checked once per process
_VERIFIED_MAX = 10_000


def verify_access_token(token: str, secret: str) -> dict:
    claims = _verified.get(token)
    if claims is not None:
        if claims["exp"] > time.time():
            return claims
        _verified.pop(token, None)
    claims = _decode_access_token(token, secret)
    if len(_verified) >= _VERIFIED_MAX:
        _verified.clear()
    _verified[token] = claims
    return claims


def _decode_access_token(token: str, secret: str) -> dict:
    try:
        claims = decode_token(
            token, secret, audience=AUDIENCE, issuer=ISSUER, require=("exp", "iat", "sub", "jti", "sid")
        )
    except hs256.InvalidToken as exc:
        raise InvalidToken(str(exc)) from exc
    if claims.get("typ") != "access":
        raise InvalidToken("not an access token")
    return claims


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int

    def body(self) -> dict:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
        }


def open_session(
    db_session: DbSession,
    user: User,
    *,
    secret: str,
    access_ttl: int,
    refresh_ttl: int,
    client_ip: str | None,
    user_agent: str | None,
) -> TokenPair:
    refresh_secret = secrets.token_urlsafe(32)
    record = Session(
        id=uuid.uuid4().hex,
        user_id=user.id,
        refresh_hash=_hash(refresh_secret),
        client_ip=client_ip,
        user_agent=(user_agent or "")[:300] or None,
        created_at=utcnow(),
        last_used_at=utcnow(),
        expires_at=utcnow() + timedelta(seconds=refresh_ttl),
    )
    db_session.add(record)
    return TokenPair(
        issue_access_token(user.id, user.username, record.id, secret, access_ttl),
        f"{REFRESH_PREFIX}{record.id}.{refresh_secret}",
        access_ttl,
    )


class RefreshReused(Exception):
    """A replaced refresh token came back: someone holds a copy. The session is now revoked."""

    def __init__(self, session_id: str, user_id: int):
        super().__init__(session_id)
        self.session_id = session_id
        self.user_id = user_id


def refresh_session(
    db_session: DbSession, refresh_token: str, *, secret: str, access_ttl: int, refresh_ttl: int
) -> tuple[TokenPair, Session, User]:
    if not refresh_token.startswith(REFRESH_PREFIX) or "." not in refresh_token:
        raise InvalidToken("malformed refresh token")
    session_id, _, presented = refresh_token[len(REFRESH_PREFIX) :].partition(".")
    record = db_session.get(Session, session_id)
    if record is None or record.revoked_at is not None or record.expires_at < utcnow():
        raise InvalidToken("session closed")
    presented_hash = _hash(presented)
    if _same(presented_hash, record.previous_refresh_hash):
        record.revoked_at = utcnow()
        bump(db_session)
        raise RefreshReused(record.id, record.user_id)
    if not _same(presented_hash, record.refresh_hash):
        raise InvalidToken("unknown refresh token")
    user = db_session.get(User, record.user_id)
    if user is None or not user.active:
        raise InvalidToken("account disabled")
    new_secret = secrets.token_urlsafe(32)
    record.previous_refresh_hash = record.refresh_hash
    record.refresh_hash = _hash(new_secret)
    record.last_used_at = utcnow()
    record.expires_at = utcnow() + timedelta(seconds=refresh_ttl)
    pair = TokenPair(
        issue_access_token(user.id, user.username, record.id, secret, access_ttl),
        f"{REFRESH_PREFIX}{record.id}.{new_secret}",
        access_ttl,
    )
    return pair, record, user


def revoke_sessions(db_session: DbSession, user_id: int, keep: str | None = None) -> int:
    """Closes every open session of a user (but ``keep``); their access tokens stop working at once."""
    statement = (
        update(Session).where(Session.user_id == user_id, Session.revoked_at.is_(None)).values(revoked_at=utcnow())
    )
    if keep:
        statement = statement.where(Session.id != keep)
    bump(db_session)
    return cast(CursorResult[Any], db_session.execute(statement)).rowcount


@dataclass(frozen=True)
class NewApiKey:
    record: ApiKey
    plaintext: str


def create_api_key(
    db_session: DbSession,
    *,
    name: str,
    permissions: list[str],
    location_ids: list[int] | None,
    created_by: int | None,
    expires_at: datetime | None,
    made_with_key_id: int | None = None,
) -> NewApiKey:
    prefix = secrets.token_hex(6)
    secret_part = secrets.token_urlsafe(32)
    record = ApiKey(
        name=name,
        prefix=prefix,
        secret_hash=_hash(secret_part),
        permissions=sorted(permissions),
        location_ids=sorted(location_ids) if location_ids is not None else None,
        created_by=created_by,
        made_with_key_id=made_with_key_id,
        created_at=utcnow(),
        expires_at=expires_at,
    )
    db_session.add(record)
    return NewApiKey(record, f"{API_KEY_PREFIX}{prefix}.{secret_part}")


def find_api_key(db_session: DbSession, presented: str) -> ApiKey:
    prefix, _, secret_part = presented[len(API_KEY_PREFIX) :].partition(".")
    record = db_session.scalar(select(ApiKey).where(ApiKey.prefix == prefix)) if prefix else None
    if record is None or not _same(_hash(secret_part), record.secret_hash):
        raise InvalidToken("unknown API key")
    if record.revoked_at is not None:
        raise InvalidToken("API key revoked")
    if record.expires_at is not None and record.expires_at < utcnow():
        raise InvalidToken("API key expired")
    return record
