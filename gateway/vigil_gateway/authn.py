"""Authentication of every public API call: a user's bearer access token or an API key → the identity
the services receive (``g.identity``, signed into ``g.identity_token`` for the forwarded call)."""

from __future__ import annotations

import re
from datetime import timedelta

from flask import Flask, g, request
from sqlalchemy import update

from vigil_shared.db import Database, utcnow
from vigil_shared.errors import UNAUTHENTICATED, Problem

from .access import api_key_identity, key_lineage, user_identity
from .identity_cache import Entry, IdentityCache
from .models import ApiKey, User
from .models import Session as SignInSession
from .openapi import PUBLIC_DOCS_PATHS
from .settings import GatewaySettings
from .tokens import API_KEY_PREFIX, InvalidToken, find_api_key, verify_access_token

# Central stations sign each message with their integration's secret instead (api/integrations.py).
SIGNED_API_PATHS = re.compile(r"^/api/v1/integrations/[0-9]{1,9}/(signals|account-status)$")
PUBLIC_API_PATHS = frozenset({"/api/v1/auth/token", "/api/v1/auth/refresh", "/api/v1/openapi.json"}) | PUBLIC_DOCS_PATHS
API_KEY_HEADER = "X-API-Key"
_API_KEY_ENVIRON = "HTTP_" + API_KEY_HEADER.upper().replace("-", "_")
KEY_USE_RESOLUTION = timedelta(minutes=1)  # last_used_at is written at most once a minute per key


def _unauthenticated(detail: str) -> Problem:
    return Problem(401, detail, type=UNAUTHENTICATED)


def authenticate(settings: GatewaySettings, db: Database, cache: IdentityCache) -> Entry:
    """Bearer access token (a user's session) or API key → the identity passed on to services.

    Resolved identities are cached while ``auth_state.epoch`` is unchanged, so a call costs one
    small query; any revocation or rights change bumps the epoch and applies on the next call.
    """
    environ = request.environ
    scheme, credential, api_key, claims, epoch, cache_key, entry = _lookup(settings, cache, environ)
    address = request.remote_addr
    if api_key:
        if entry is None:
            session = db.request_session()
            try:
                key = find_api_key(session, api_key)
            except InvalidToken:
                raise _unauthenticated("The API key is invalid, expired or revoked.") from None
            identity = api_key_identity(session, key, None, address)
            if identity is None:
                raise _unauthenticated(
                    "The API key's creator is no longer active, or the key it was made with "
                    "was revoked or expired; the key no longer works."
                )
            entry = cache.put(
                cache_key,
                Entry(
                    epoch,
                    identity,
                    None,
                    None,
                    key_id=key.id,
                    key_creator_id=key.created_by,
                    expires_at=key_lineage(session, key)[1],
                ),
            )
        note_key_use(db, entry)
        return entry
    if scheme.lower() != "bearer" or not credential:
        raise _unauthenticated("Send `Authorization: Bearer <token>`; get a token from POST /api/v1/auth/token.")
    if claims is None:
        raise _unauthenticated("The access token is invalid or expired.")
    if entry is None:
        session = db.request_session()
        signed_in = session.get(SignInSession, claims["sid"])
        if signed_in is None or signed_in.revoked_at is not None:
            raise _unauthenticated("This session has ended; sign in again.")
        user = session.get(User, int(claims["sub"]))
        if user is None or not user.active or signed_in.user_id != user.id:
            raise _unauthenticated("The account behind this token is disabled.")
        entry = cache.put(cache_key, Entry(epoch, user_identity(session, user, None, address), user.id, signed_in.id))
    return entry


def _lookup(
    settings: GatewaySettings, cache: IdentityCache, environ: dict
) -> tuple[str, str, str | None, dict | None, int, tuple, Entry | None]:
    """What a call's credentials name, read from its WSGI environ: the ``Authorization`` scheme and
    credential, the API key (``X-API-Key``, or an API key sent as the bearer credential), a bearer
    token's verified claims (None when it does not verify, or is an API key), the current epoch, the
    cache key, and the entry cached under it that is still current (same epoch, an API key not
    expired), or None. Shared by :func:`authenticate` and :func:`cached_entry`, so both judge alike."""
    scheme, _, credential = environ.get("HTTP_AUTHORIZATION", "").partition(" ")
    credential = credential.strip()
    api_key = environ.get(_API_KEY_ENVIRON) or (credential if credential.startswith(API_KEY_PREFIX) else None)
    epoch = cache.epoch()
    address = environ.get("REMOTE_ADDR")  # request.remote_addr
    claims = None
    if api_key:
        cache_key: tuple = ("key", api_key, address)
        entry = cache.get(cache_key, epoch)
        if entry is not None and entry.expires_at and entry.expires_at < utcnow():
            entry = None
        return scheme, credential, api_key, None, epoch, cache_key, entry
    if scheme.lower() != "bearer" or not credential:
        return scheme, credential, None, None, epoch, (), None
    try:
        claims = verify_access_token(credential, settings.secret_key)
    except InvalidToken:
        return scheme, credential, None, None, epoch, (), None
    cache_key = ("session", claims["sid"], address)
    return scheme, credential, None, claims, epoch, cache_key, cache.get(cache_key, epoch)


def cached_entry(settings: GatewaySettings, cache: IdentityCache, environ: dict) -> Entry | None:
    """The entry :func:`authenticate` would return for this call without resolving anything (a cached,
    current identity for valid credentials), or None when it would resolve or refuse. Records nothing:
    the caller notes an API key's use (:func:`note_key_use`) when it goes on with the call."""
    return _lookup(settings, cache, environ)[6]


def needs_authentication(path: str) -> bool:
    """Every ``/api/`` call but sign-in, refresh, the documentation and the signed integration calls."""
    return path.startswith("/api/") and path not in PUBLIC_API_PATHS and not SIGNED_API_PATHS.match(path)


def note_key_use(db: Database, entry: Entry) -> None:
    """Records an API key's last use, at most once a minute."""
    now = utcnow()
    if entry.last_used_written is None or now - entry.last_used_written > KEY_USE_RESOLUTION:
        with db.transaction() as session:
            session.execute(update(ApiKey).where(ApiKey.id == entry.key_id).values(last_used_at=now))
        entry.last_used_written = now


def install_authentication(app: Flask, settings: GatewaySettings, db: Database, cache: IdentityCache) -> None:
    """Every ``/api/`` call but sign-in, refresh and the documentation is authenticated before anything else."""
    base = settings.base

    @app.before_request
    def _authenticate_api_calls():
        if needs_authentication(request.path):
            entry = authenticate(settings, db, cache)
            g.identity = entry.identity.with_request_id(g.request_id)
            g.user_id, g.session_id, g.key_creator_id = entry.user_id, entry.session_id, entry.key_creator_id
            g.key_id = entry.key_id
            g.identity_token, g.identity_binding = cache.signed_token(
                entry, base.internal_secret, base.identity_token_ttl, g.request_id
            )
