"""The caller's identity as the gateway passes it to services.

The gateway authenticates the caller, then signs a short-lived token (HS256 with
``VIGIL_INTERNAL_SECRET``) carrying who the caller is and what they may do. Services trust nothing
else: a request without a valid token is refused with 401, even on a service's own port.
"""
from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field

import jwt

IDENTITY_HEADER = "X-Vigil-Identity"
ISSUER = "vigil-gateway"
AUDIENCE = "vigil-services"
ALL = "*"


class InvalidIdentity(Exception):
    pass


@dataclass(frozen=True)
class Identity:
    subject: str
    username: str
    kind: str = "user"  # "user", "api_key" or "service"
    permissions: frozenset[str] = field(default_factory=frozenset)
    request_id: str | None = None

    def can(self, permission: str) -> bool:
        return ALL in self.permissions or permission in self.permissions

    def to_claims(self) -> dict:
        return {
            "sub": self.subject,
            "name": self.username,
            "kind": self.kind,
            "perms": sorted(self.permissions),
            "rid": self.request_id,
        }

    @classmethod
    def from_claims(cls, claims: dict) -> "Identity":
        try:
            return cls(
                subject=str(claims["sub"]),
                username=str(claims["name"]),
                kind=str(claims.get("kind", "user")),
                permissions=frozenset(claims.get("perms") or ()),
                request_id=claims.get("rid"),
            )
        except (KeyError, TypeError) as exc:
            raise InvalidIdentity("identity token is missing claims") from exc


def sign_identity(identity: Identity, secret: str, ttl_seconds: int = 60) -> str:
    now = int(time.time())
    claims = identity.to_claims() | {
        "iss": ISSUER, "aud": AUDIENCE, "iat": now, "nbf": now - 5, "exp": now + ttl_seconds,
        "jti": uuid.uuid4().hex,
    }
    return jwt.encode(claims, secret, algorithm="HS256")


def verify_identity(token: str, secret: str) -> Identity:
    try:
        claims = jwt.decode(
            token, secret, algorithms=["HS256"], audience=AUDIENCE, issuer=ISSUER,
            options={"require": ["exp", "iat", "sub", "aud", "iss"]}, leeway=5,
        )
    except jwt.PyJWTError as exc:
        raise InvalidIdentity(str(exc)) from exc
    return Identity.from_claims(claims)


def service_identity(service: str, permissions: set[str], request_id: str | None = None) -> Identity:
    """The identity a service uses when it calls another service on its own behalf."""
    return Identity(subject=f"service:{service}", username=service, kind="service",
                    permissions=frozenset(permissions), request_id=request_id)
