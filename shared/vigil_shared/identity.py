"""The caller's identity as the gateway passes it to services.

The gateway authenticates the caller, resolves their roles into effective permissions (company-wide
ones, and per office location), then signs a short-lived token (HS256 with
``VIGIL_INTERNAL_SECRET``) carrying them. Services trust nothing else: a request without a valid
token is refused with 401, even on a service's own port.

On the wire, per-location permissions are deduplicated: ``sets`` lists each distinct permission set
once and ``locs`` maps location ids to an index in it, so a user granted one role in forty
locations costs one set, not forty.

The token is a standard JWT (RFC 7519, HS256), signed and verified here with the standard library:
every service call verifies one, and PyJWT's generic decoder costs about 0.15 ms per token of this
size (a per-character check in Python), a tenth of a whole request. Only the one header the gateway
writes is accepted (no other algorithm, no ``none``), the signature is compared in constant time
before anything in the token is read, and ``exp``/``nbf``/``iat``, issuer and audience are checked
as PyJWT checks them, with the same leeway.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import time
import uuid
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Any

from .permissions import GLOBAL, scope_of

IDENTITY_HEADER = "X-Vigil-Identity"
ISSUER = "vigil-gateway"
AUDIENCE = "vigil-services"
LEEWAY_SECONDS = 5  # clock skew tolerated between the gateway and a service
REQUIRED_CLAIMS = ("exp", "iat", "sub", "aud", "iss")


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# The only header accepted, byte for byte as JWT libraries write it (sorted keys, no spaces).
TOKEN_HEADER = _b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":"), sort_keys=True).encode())


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
        return {"sub": self.subject, "name": self.username, "kind": self.kind, "perms": sorted(self.permissions),
                "sets": sets, "locs": locs, "rid": self.request_id, "ip": self.client_ip}

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


def _signature(signing_input: str, secret: str) -> str:
    return _b64url(hmac.new(secret.encode(), signing_input.encode("ascii"), hashlib.sha256).digest())


def encode_token(claims: dict, secret: str) -> str:
    """A compact HS256 JWT of ``claims`` (what ``jwt.encode(claims, secret, "HS256")`` writes)."""
    payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{TOKEN_HEADER}.{payload}"
    return f"{signing_input}.{_signature(signing_input, secret)}"


def sign_identity(identity: Identity, secret: str, ttl_seconds: int = 60) -> str:
    now = int(time.time())
    claims = identity.to_claims() | {
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return encode_token(claims, secret)


def _number(claims: dict, name: str) -> int | float:
    value = claims[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InvalidIdentity(f"the {name} claim is not a number")
    return value


def decode_token(token: str, secret: str) -> dict:
    """The claims of a gateway identity token, once its header, signature, times, issuer and audience hold."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3 or parts[0] != TOKEN_HEADER:
        raise InvalidIdentity("not an HS256 token of the gateway")
    try:
        expected = _signature(f"{parts[0]}.{parts[1]}", secret)
        signed = hmac.compare_digest(expected.encode("ascii"), parts[2].encode("ascii"))
    except UnicodeEncodeError:
        signed = False
    if not signed:
        raise InvalidIdentity("signature verification failed")
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except ValueError as exc:  # binascii.Error and JSONDecodeError are ValueErrors
        raise InvalidIdentity("the payload is not JSON") from exc
    if not isinstance(claims, dict) or any(name not in claims for name in REQUIRED_CLAIMS):
        raise InvalidIdentity("a required claim is missing")
    now = time.time()
    if _number(claims, "exp") <= now - LEEWAY_SECONDS:
        raise InvalidIdentity("the token has expired")
    not_before = max(_number(claims, "iat"), _number(claims, "nbf") if "nbf" in claims else 0)
    if not_before > now + LEEWAY_SECONDS:
        raise InvalidIdentity("the token is not yet valid")
    if claims["iss"] != ISSUER:
        raise InvalidIdentity("wrong issuer")
    audience = claims["aud"]
    if audience != AUDIENCE and not (isinstance(audience, list) and AUDIENCE in audience):
        raise InvalidIdentity("wrong audience")
    return claims


def verify_identity(token: str, secret: str) -> Identity:
    return Identity.from_claims(decode_token(token, secret))


def service_identity(service: str, permissions: AbstractSet[str] = frozenset(),
                     locations: Mapping[int, frozenset[str]] | None = None,
                     request_id: str | None = None) -> Identity:
    """The identity a service uses when it calls another service on its own behalf."""
    return Identity(subject=f"service:{service}", username=service, kind="service",
                    permissions=frozenset(permissions), locations=dict(locations or {}), request_id=request_id)
