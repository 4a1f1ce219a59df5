"""The caller's identity as the gateway passes it to services.

The gateway authenticates the caller, resolves their roles into effective permissions (company-wide
ones, and per office location), then signs a short-lived token (HS256 with
``VIGIL_INTERNAL_SECRET``) carrying them. Services trust nothing else: a request without a valid
token is refused with 401, even on a service's own port.

On the wire, per-location permissions are deduplicated: ``sets`` lists each distinct permission set
once and ``locs`` maps location ids to an index in it, so a user granted one role in forty
locations costs one set, not forty.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from . import hs256
from .permissions import GLOBAL, scope_of

IDENTITY_HEADER = "X-Vigil-Identity"
# The call's request id bound to a reused identity token (see :func:`request_binding`).
BINDING_HEADER = "X-Vigil-Identity-Binding"
ISSUER = "vigil-gateway"
AUDIENCE = "vigil-services"
LEEWAY_SECONDS = 5
VERIFIED_MAX = 10_000  # tokens remembered per process; the map is emptied when full


class InvalidIdentity(Exception):
    pass


@dataclass(frozen=True)
class Identity:
    subject: str
    username: str
    kind: str = "user"  # "user", "api_key" or "service"
    permissions: frozenset[str] = field(default_factory=frozenset)  # company-wide
    locations: Mapping[int, frozenset[str]] = field(default_factory=dict)  # location id -> permissions there
    request_id: str | None = None
    client_ip: str | None = None

    def with_request_id(self, request_id: str | None) -> Identity:
        """This identity for one call: ``dataclasses.replace(self, request_id=...)`` without re-running
        ``__init__`` over every field (a copy of the instance's fields; it is frozen, so they are shared
        safely). It runs on every call a gateway or service receives."""
        copy = object.__new__(type(self))
        copy.__dict__.update(self.__dict__)
        copy.__dict__["request_id"] = request_id
        return copy

    def has(self, permission: str) -> bool:
        """A company-wide permission."""
        return permission in self.permissions

    @property
    def is_service(self) -> bool:
        """Another Vigil service calling on its own behalf: its permissions hold in every location."""
        return self.kind == "service"

    def can(self, permission: str, location_id: int | None) -> bool:
        """A location-scoped permission at one location (global permissions ignore the location)."""
        if scope_of(permission) == GLOBAL or self.is_service:
            return self.has(permission)
        return location_id is not None and permission in self.locations.get(location_id, ())

    def locations_with(self, permission: str) -> frozenset[int]:
        return frozenset(loc for loc, perms in self.locations.items() if permission in perms)

    def location_filter(self, permission: str) -> frozenset[int] | None:
        """The locations whose rows a list may show; ``None`` means every location (services only)."""
        if self.is_service and self.has(permission):
            return None
        return self.locations_with(permission)

    def can_anywhere(self, permission: str) -> bool:
        if scope_of(permission) == GLOBAL or self.is_service:
            return self.has(permission)
        return any(permission in perms for perms in self.locations.values())

    def to_claims(self) -> dict[str, Any]:
        sets: list[list[str]] = []
        index: dict[frozenset[str], int] = {}
        locs: dict[str, int] = {}
        for location_id, perms in sorted(self.locations.items()):
            if perms not in index:
                index[perms] = len(sets)
                sets.append(sorted(perms))
            locs[str(location_id)] = index[perms]
        return {
            "sub": self.subject,
            "name": self.username,
            "kind": self.kind,
            "perms": sorted(self.permissions),
            "sets": sets,
            "locs": locs,
            "rid": self.request_id,
            "ip": self.client_ip,
        }

    @classmethod
    def from_claims(cls, claims: dict[str, Any]) -> Identity:
        try:
            sets = [frozenset(s) for s in claims.get("sets") or []]
            return cls(
                subject=str(claims["sub"]),
                username=str(claims["name"]),
                kind=str(claims.get("kind", "user")),
                permissions=frozenset(claims.get("perms") or ()),
                locations={int(loc): sets[i] for loc, i in (claims.get("locs") or {}).items()},
                request_id=claims.get("rid"),
                client_ip=claims.get("ip"),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InvalidIdentity("identity token is missing or has malformed claims") from exc


def sign_identity(identity: Identity, secret: str, ttl_seconds: int = 60) -> str:
    return sign_claims(identity.to_claims(), secret, ttl_seconds)


def sign_claims(claims: Mapping[str, Any], secret: str, ttl_seconds: int = 60) -> str:
    """An identity token for ``claims`` (an identity's, see :meth:`Identity.to_claims`): issuer, audience,
    a fresh id and a lifetime of ``ttl_seconds`` (valid from 5 seconds ago, for clock skew)."""
    now = int(time.time())
    registered = {"iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + ttl_seconds}
    return hs256.encode({**claims, **registered, "jti": uuid.uuid4().hex}, secret)


# token and secret -> its identity and expiry: a token the gateway reuses between calls (one per caller and
# access epoch, for half its lifetime) has its signature checked once per process, not on every call
# (PyJWT's decode was a tenth of a property read's CPU).
_verified: dict[tuple[str, str], tuple[Identity, float]] = {}
_clock = time.time


def verify_identity(token: str, secret: str, *, request_id: str | None = None, binding: str | None = None) -> Identity:
    """The identity a gateway token carries, after checking its signature, algorithm, times, issuer and
    audience; ``InvalidIdentity`` otherwise.

    A token seen before (the same bytes, so the same signature) is taken from memory until its expiry
    (plus the same leeway), then checked again, so it is refused once expired. With a ``binding``
    (:data:`BINDING_HEADER`), the call's ``request_id`` is the one the gateway bound to this token for
    this call (:func:`request_binding`); a binding that does not match is refused.
    """
    key = (token, secret)
    try:
        known = _verified.get(key)
    except TypeError:  # not even a string
        known = None
    if known is None or known[1] + LEEWAY_SECONDS < _clock():
        try:
            claims = decode_token(
                token,
                secret,
                audience=AUDIENCE,
                issuer=ISSUER,
                require=("exp", "iat", "sub", "aud", "iss"),
                leeway=LEEWAY_SECONDS,
            )
        except hs256.InvalidToken as exc:
            raise InvalidIdentity(str(exc)) from exc
        known = (Identity.from_claims(claims), float(claims["exp"]))
        if len(_verified) >= VERIFIED_MAX:
            _verified.clear()
        _verified[key] = known
    identity = known[0]
    if binding is None:
        return identity
    expected = request_binding(token, request_id, secret)
    if not isinstance(binding, str) or not hmac.compare_digest(binding.encode(), expected.encode()):
        raise InvalidIdentity("the request binding does not match the identity token")
    return identity.with_request_id(request_id)


def request_binding(token: str, request_id: str | None, secret: str) -> str:
    """Binds one call's request id to an identity token reused between calls: an HMAC of both with the
    token's secret, so the id a service writes into histories is still the gateway's, never the sender's."""
    message = f"{token}\n{request_id or ''}".encode()
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def decode_token(
    token: str, secret: str, *, audience: str, issuer: str, require: tuple[str, ...], leeway: int = 0
) -> dict[str, Any]:
    """The claims of a token Vigil signed: HS256 only (never the algorithm the token names), for this
    audience and issuer, with the ``require``d claims present; raises ``hs256.InvalidToken`` otherwise."""
    return hs256.decode(token, secret, audience=audience, issuer=issuer, require=require, leeway=leeway)


def service_identity(
    service: str,
    permissions: AbstractSet[str] = frozenset(),
    locations: Mapping[int, frozenset[str]] | None = None,
    request_id: str | None = None,
) -> Identity:
    """The identity a service uses when it calls another service on its own behalf."""
    return Identity(
        subject=f"service:{service}",
        username=service,
        kind="service",
        permissions=frozenset(permissions),
        locations=dict(locations or {}),
        request_id=request_id,
    )
