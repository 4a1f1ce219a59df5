"""What the gateway needs beyond the settings every process has."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from vigil_shared.config import SERVICES, ConfigError, Settings, env, env_float, env_int, service_url
from vigil_shared.crypto import FieldCipher

from .passwords import HASHING_CHOICES, STANDARD, PasswordHashing


def _password_hashing() -> PasswordHashing:
    raw = env("VIGIL_PASSWORD_HASHING", "standard")
    if raw not in HASHING_CHOICES:
        raise ConfigError(f"VIGIL_PASSWORD_HASHING must be one of {', '.join(HASHING_CHOICES)}, got {raw!r}")
    return HASHING_CHOICES[raw]


@dataclass(frozen=True)
class LoginPolicy:
    failures_per_user_per_minute: int = 5
    failures_per_address_per_15min: int = 30
    lockout_threshold: int = 10
    lockout_seconds: int = 900
    # the key of the HMAC a username is kept under in the throttling windows (never the name itself: a
    # password typed into the username field would be stored); GatewaySettings derives it from its secret
    name_secret: str = ""


@dataclass(frozen=True)
class GatewaySettings:
    base: Settings
    secret_key: str
    access_token_ttl: int
    refresh_token_ttl: int
    upstream_timeout: float
    service_urls: dict[str, str]
    login_policy: LoginPolicy
    trusted_proxy_hops: int
    password_hashing: PasswordHashing = STANDARD

    def __post_init__(self) -> None:
        if not self.login_policy.name_secret:  # derived from the one secret, like the ciphers below
            secret = hashlib.sha256(f"vigil-gateway-login-names:{self.secret_key}".encode()).hexdigest()
            object.__setattr__(self, "login_policy", dataclasses.replace(self.login_policy, name_secret=secret))

    @classmethod
    def from_env(cls, **overrides) -> GatewaySettings:
        base = overrides.pop("base", None) or Settings.from_env("gateway")
        secret = overrides.pop("secret_key", None) or env("VIGIL_SECRET_KEY")
        if not secret:
            raise ConfigError(
                "VIGIL_SECRET_KEY is not set. `make run` generates one into var/secrets.env; "
                "in production set a long random value."
            )
        if base.production and len(secret) < 32:
            raise ConfigError("VIGIL_SECRET_KEY must be at least 32 characters in production")
        values: dict[str, Any] = dict(
            base=base,
            secret_key=secret,
            access_token_ttl=env_int("VIGIL_ACCESS_TOKEN_TTL", 900),
            refresh_token_ttl=env_int("VIGIL_REFRESH_TOKEN_TTL", 30 * 24 * 3600),
            upstream_timeout=env_float("VIGIL_UPSTREAM_TIMEOUT", 10.0),
            service_urls={name: service_url(name) for name in SERVICES},
            login_policy=LoginPolicy(
                failures_per_user_per_minute=env_int("VIGIL_LOGIN_FAILURES_PER_USER", 5),
                failures_per_address_per_15min=env_int("VIGIL_LOGIN_FAILURES_PER_ADDRESS", 30),
                lockout_threshold=env_int("VIGIL_LOCKOUT_THRESHOLD", 10),
                lockout_seconds=env_int("VIGIL_LOCKOUT_SECONDS", 900),
            ),
            trusted_proxy_hops=env_int("VIGIL_TRUSTED_PROXY_HOPS", 0),
            password_hashing=_password_hashing(),
        )
        values.update(overrides)
        if base.production and not values["password_hashing"].at_least(STANDARD):
            raise ConfigError(
                "Password hashing weaker than the standard Argon2id parameters is for tests only; "
                "unset VIGIL_PASSWORD_HASHING in production"
            )
        return cls(**values)

    def reply_cipher(self) -> FieldCipher:
        """Encrypts the gateway's stored idempotent replies (an API key's secret, a user record).

        Derived from ``VIGIL_SECRET_KEY``, the gateway's one secret: changing it signs every user out
        and leaves replies stored under the old one unreadable (their keys answer 422 until expiry).
        """

        def derive(purpose: str) -> str:
            return base64.urlsafe_b64encode(hashlib.sha256(f"{purpose}:{self.secret_key}".encode()).digest()).decode()

        return FieldCipher([derive("vigil-gateway-replies")], derive("vigil-gateway-reply-index"))

    def webhook_cipher(self) -> FieldCipher:
        """Encrypts webhook signing secrets and the bodies kept as sent (``webhook_bodies``; derived like
        ``reply_cipher``), and keys the bodies' digests (its blind index)."""

        def derive(purpose: str) -> str:
            return base64.urlsafe_b64encode(hashlib.sha256(f"{purpose}:{self.secret_key}".encode()).digest()).decode()

        return FieldCipher([derive("vigil-gateway-webhooks")], derive("vigil-gateway-webhook-index"))
