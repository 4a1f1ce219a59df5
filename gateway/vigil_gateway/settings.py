"""What the gateway needs beyond the settings every process has."""
from __future__ import annotations

from dataclasses import dataclass

from vigil_shared.config import SERVICES, ConfigError, Settings, env, service_url


@dataclass(frozen=True)
class GatewaySettings:
    base: Settings
    secret_key: str
    access_token_ttl: int
    upstream_timeout: float
    service_urls: dict[str, str]

    @classmethod
    def from_env(cls, **overrides) -> "GatewaySettings":
        base = overrides.pop("base", None) or Settings.from_env("gateway")
        secret = overrides.pop("secret_key", None) or env("VIGIL_SECRET_KEY")
        if not secret:
            raise ConfigError("VIGIL_SECRET_KEY is not set. `make run` generates one into var/secrets.env; "
                              "in production set a long random value.")
        if base.production and len(secret) < 32:
            raise ConfigError("VIGIL_SECRET_KEY must be at least 32 characters in production")
        values = dict(
            base=base,
            secret_key=secret,
            access_token_ttl=int(env("VIGIL_ACCESS_TOKEN_TTL", "900")),
            upstream_timeout=float(env("VIGIL_UPSTREAM_TIMEOUT", "10")),
            service_urls={name: service_url(name) for name in SERVICES},
        )
        values.update(overrides)
        return cls(**values)
