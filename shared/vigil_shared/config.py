"""Settings from ``VIGIL_*`` environment variables.

Every variable any Vigil process reads is declared once in :data:`SETTINGS`, so the README table,
the compose-file check and the code can never disagree about what exists.
"""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar, overload

SERVICES = ("customer", "property", "billing", "credit")
"""The four data-owning services, in port order."""

PROCESS_NAMES = ("gateway",) + SERVICES

DEFAULT_PORTS = {"gateway": 8000, "customer": 8001, "property": 8002, "billing": 8003, "credit": 8004}
WORKER_HEALTH_PORT_OFFSET = 100  # customer worker answers health checks on 8101, its relay on 8201
RELAY_HEALTH_PORT_OFFSET = 200
BEAT_HEALTH_PORT_OFFSET = 300  # a service's Celery beat (billing: 8303)


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    description: str
    documented_as: str = ""  # the README's one row for a per-process family, e.g. VIGIL_<NAME>_PORT

    @property
    def readme_name(self) -> str:
        return self.documented_as or self.name


def _per_process(template: str, default: str, description: str, names: Iterable[str] = PROCESS_NAMES) -> list[Setting]:
    placeholder = "<NAME>" if names == PROCESS_NAMES else "<SERVICE>"
    return [
        Setting(
            template.format(NAME=n.upper()),
            default.format(name=n),
            description.format(name=n),
            documented_as=template.format(NAME=placeholder),
        )
        for n in names
    ]


def settings_table(text: str) -> list[Setting]:
    """Settings written as a table: a ``VIGIL_NAME = default`` line (nothing after ``=``: no default),
    then the setting's description on the more indented lines below it."""
    rows: list[tuple[str, str, list[str]]] = []
    for line in textwrap.dedent(text).strip().splitlines():
        if line.startswith(" "):
            rows[-1][2].append(line.strip())
        else:
            name, _, default = line.partition("=")
            rows.append((name.strip(), default.strip(), []))
    return [Setting(name, default, " ".join(words)) for name, default, words in rows]


@dataclass(frozen=True)
class ExternalSystem:
    """A system outside Vigil that a service calls over HTTP, with a sandbox stand-in of it: declared
    once, its two settings (the sandbox's port, the URL the service reaches it at) follow."""

    name: str  # of its settings: VIGIL_<NAME>_PORT, VIGIL_<NAME>_URL
    port: int  # the sandbox's default port; the URL defaults to the sandbox
    sandbox: str  # what the sandbox process stands in for
    caller: str  # who calls it, for what

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def settings(self) -> list[Setting]:
        return [
            Setting(f"VIGIL_{self.name}_PORT", str(self.port), f"HTTP port of the sandbox {self.sandbox}."),
            Setting(
                f"VIGIL_{self.name}_URL",
                self.default_url,
                f"{self.caller} (the sandbox by default; the real one in production).",
            ),
        ]

    def url(self) -> str:
        """Where the caller reaches it now (``VIGIL_<NAME>_URL``), without a trailing slash."""
        return env(f"VIGIL_{self.name}_URL", self.default_url).rstrip("/")


BUREAU = ExternalSystem(
    "BUREAU", 8010, "credit bureau (and ADT PreCheck) process", "Where the credit service reaches the credit bureau"
)
PROCESSOR = ExternalSystem(
    "PROCESSOR", 8090, "payment processor (`vigil-sandbox-processor`)", "Billing: the payment processor's API"
)

SETTINGS: list[Setting] = [
    *settings_table(
        """
        VIGIL_VAR_DIR = ./var
            Directory for embedded databases, the file broker, uploads and generated secrets.
        VIGIL_ENV = development
            `production` refuses to start without explicit secrets.
        VIGIL_BROKER_URL = sqlite:///$VIGIL_VAR_DIR/broker.sqlite
            kombu broker URL: `sqlite:///<file>` (the embedded SQLite broker), `amqp://user:pass@host:5672//`,
            `redis://host:6379/0`; `filesystem://` (kombu's, not recommended) still works.
        VIGIL_BROKER_DIR = $VIGIL_VAR_DIR/broker
            Message folder of kombu's `filesystem://` broker (only with that URL).
        VIGIL_QUEUE_PREFIX = vigil
            Prefix of the per-service queues (`vigil.customer`, …); lets several installations share a broker.
        VIGIL_INTERNAL_SECRET = generated into var/secrets.env by the runner
            HMAC key of the short-lived identity token the gateway passes to services. Same value on the gateway
            and every service.
        VIGIL_SECRET_KEY = generated into var/secrets.env by the runner
            Gateway only: signs user access tokens.
        VIGIL_ACCESS_TOKEN_TTL = 900
            Seconds an access token from `/api/v1/auth/token` stays valid.
        VIGIL_REFRESH_TOKEN_TTL = 2592000
            Seconds a sign-in (its refresh token) lasts without use of the refresh token.
        VIGIL_LOGIN_FAILURES_PER_USER = 5
            Failed sign-ins per username per minute before 429.
        VIGIL_LOGIN_FAILURES_PER_ADDRESS = 30
            Failed sign-ins per client address per 15 minutes before 429.
        VIGIL_LOCKOUT_THRESHOLD = 10
            Consecutive failed sign-ins that lock an account.
        VIGIL_LOCKOUT_SECONDS = 900
            How long a locked account stays locked.
        VIGIL_PASSWORD_HASHING = standard
            Tests only: `fast-for-tests` hashes passwords with the cheapest Argon2id parameters so test suites
            sign in quickly; refused when `VIGIL_ENV=production`. `standard` is RFC 9106's low-memory Argon2id
            profile.
        VIGIL_TRUSTED_PROXY_HOPS = 0
            Gateway: reverse proxies in front of it whose X-Forwarded-For is trusted for the client address.
        VIGIL_IDENTITY_TOKEN_TTL = 60
            Seconds the gateway-to-service identity token stays valid.
        VIGIL_ADMIN_USERNAME = admin
            First admin user, created by `make run` / `vigil-gateway create-admin`.
        VIGIL_ADMIN_PASSWORD = (generated and printed once)
            Password of the first admin user.
        VIGIL_MAX_BODY_BYTES = 1048576
            Largest request body accepted (413 beyond).
        VIGIL_UPSTREAM_TIMEOUT = 10
            Gateway: seconds to wait for a service before answering 503.
        VIGIL_BIND_HOST = 127.0.0.1
            Address every HTTP process listens on (`0.0.0.0` in containers).
        VIGIL_WEB_WORKERS = 1
            gunicorn worker processes per HTTP service.
        VIGIL_WEB_THREADS = 8
            Threads per gunicorn worker.
        VIGIL_WEB_RECYCLE_RSS_MB = 80
            A web worker idle with more than this many MB resident hands its place to a fresh one (0: never).
        VIGIL_WEB_RECYCLE_IDLE_SECONDS = 30
            Seconds a web worker must have been idle before that check.
        VIGIL_WORKER_CONCURRENCY = 1
            Celery worker processes per service (on the embedded broker, 1 runs each task in the worker itself);
            the credit worker is a pool of VIGIL_CREDIT_WORKER_THREADS threads instead.
        VIGIL_RELAY_INTERVAL = 0.2
            Seconds the outbox relay waits between polls when idle.
        VIGIL_LOG_LEVEL = INFO
            Log level of every process (logs are JSON lines on stderr).
        VIGIL_LOG_MAX_BYTES = 52428800
            vigil-run: a process's log (var/log/<process>.log) is rotated once this large (0: never).
        VIGIL_LOG_BACKUPS = 3
            vigil-run: rotated logs kept per process (<process>.log.1 the latest).
        """
    ),
    *BUREAU.settings(),
    *settings_table(
        """
        VIGIL_BUREAU_TIMEOUT = 10
            Credit service: seconds one bureau request may take before it is retried.
        VIGIL_BUREAU_RETRIES = 3
            Credit service: retries of a bureau request that timed out or failed (5xx).
        VIGIL_BUREAU_BACKOFF = 1
            Credit service: seconds before the first retry; doubled for each next one.
        VIGIL_BUREAU_CONCURRENCY = 8
            Credit service: most credit bureau requests in flight at once, across every credit worker process.
        VIGIL_ADT_CONCURRENCY = 8
            Credit service: most ADT PreCheck requests in flight at once, across every credit worker process
            (each answer taking t seconds, ADT answers at most this / t PreChecks a second).
        VIGIL_CREDIT_WORKER_THREADS = 12
            Credit service: threads of each credit worker process (its calls wait on the bureau and ADT, not the
            CPU).
        VIGIL_BUREAU_SLOW_SECONDS = 4
            Sandbox bureau: how long the slow test identity (SSN ending 1002) takes.
        VIGIL_BILLING_BEAT_HEALTH_PORT = 8303
            Port of the billing Celery beat's /healthz and /readyz.
        """
    ),
    *PROCESSOR.settings(),
    *settings_table(
        """
        VIGIL_PROCESSOR_API_KEY = sk_test_vigil_sandbox
            Billing: the processor's secret key (the sandbox accepts any `sk_test_…`).
        """
    ),
    *_per_process(
        "VIGIL_{NAME}_DATABASE_URL",
        "sqlite:///$VIGIL_VAR_DIR/{name}.db",
        "SQLAlchemy URL of the {name} database, e.g. `postgresql+psycopg://user@host/vigil_{name}`.",
    ),
    *_per_process("VIGIL_{NAME}_PORT", "", "HTTP port of the {name} process."),
    *_per_process(
        "VIGIL_{NAME}_URL",
        "http://127.0.0.1:<port>",
        "Where the gateway and other services reach the {name} service.",
        SERVICES,
    ),
    *_per_process(
        "VIGIL_{NAME}_ENCRYPTION_KEYS",
        "generated into var/secrets.env by the runner",
        "Comma-separated Fernet keys encrypting the {name} service's confidential fields; "
        "the first encrypts, all decrypt (rotation).",
        SERVICES,
    ),
    *_per_process(
        "VIGIL_{NAME}_BLIND_INDEX_KEY",
        "generated into var/secrets.env by the runner",
        "Key of the {name} service's blind indexes (equality search over encrypted fields).",
        SERVICES,
    ),
    *_per_process(
        "VIGIL_{NAME}_WORKER_HEALTH_PORT", "", "Port of the {name} Celery worker's /healthz and /readyz.", SERVICES
    ),
    *_per_process(
        "VIGIL_{NAME}_RELAY_HEALTH_PORT", "", "Port of the {name} outbox relay's /healthz and /readyz.", SERVICES
    ),
    # webhooks and the change feed (the gateway's worker; docs/integrations.md)
    *settings_table(
        """
        VIGIL_GATEWAY_WORKER_HEALTH_PORT = 8100
            Port of the gateway worker's /healthz and /readyz.
        VIGIL_WEBHOOK_RETRY_SCHEDULE = 5,300,1800,7200,18000,36000×7
            Comma-separated seconds between webhook delivery attempts (about three days in all).
        VIGIL_WEBHOOK_DISABLE_AFTER = 432000
            Seconds of continuous delivery failure after which a webhook subscription is disabled.
        VIGIL_WEBHOOK_TIMEOUT = 5
            Seconds a webhook receiver has to answer one delivery.
        VIGIL_WEBHOOK_ALLOWED_NETWORKS =
            Comma-separated networks (CIDR) webhooks may reach although loopback, private or link-local.
        VIGIL_WEBHOOK_SWEEP_INTERVAL = 1
            Seconds between the webhook worker's looks for due retries.
        VIGIL_WEBHOOK_CONCURRENCY = 8
            Threads of the gateway worker's event intake; its webhook sender threads are four times as many.
        VIGIL_WEBHOOK_DELIVERY_THREADS = 2
            Gateway worker: threads that claim, sign and hand out webhook deliveries (apart from the event intake).
        VIGIL_WEBHOOK_DELIVERY_PROCESS = 1
            1: the gateway worker starts vigil-gateway deliver to send webhooks on another core; 0: it sends them.
        VIGIL_WEBHOOK_POLL_INTERVAL = 0.05
            Seconds the webhook delivery process waits between looks for new deliveries while it finds none.
        VIGIL_SANDBOX_CENTRAL_STATION_PORT = 8300
            Port of the sandbox central station (make run, e2e).
        VIGIL_DRIFT_CHECK_INTERVAL = 3600
            Seconds between central-station drift checks.
        VIGIL_FEED_RETENTION_DAYS = 30
            Days the change feed and webhook delivery logs are kept.
        VIGIL_WEBHOOK_BODY_RETENTION_DAYS = 7
            Days a webhook body as sent is kept (compressed, encrypted); the delivery log stays longer.
        """
    ),
]
KNOWN_SETTINGS = frozenset(s.name for s in SETTINGS)


@overload
def env(name: str) -> str | None: ...
@overload
def env(name: str, default: str) -> str: ...
@overload
def env(name: str, default: str | None) -> str | None: ...


def env(name: str, default: str | None = None) -> str | None:
    assert name in KNOWN_SETTINGS, f"{name} is not declared in vigil_shared.config.SETTINGS"
    value = os.environ.get(name)
    return value if value not in (None, "") else default


class ConfigError(RuntimeError):
    """A setting is missing or malformed; the process refuses to start."""


def var_dir() -> Path:
    return Path(env("VIGIL_VAR_DIR", "./var")).resolve()


def default_port(process: str, kind: str = "web") -> int:
    base = DEFAULT_PORTS[process]
    offsets = {
        "web": 0,
        "worker": WORKER_HEALTH_PORT_OFFSET,
        "relay": RELAY_HEALTH_PORT_OFFSET,
        "beat": BEAT_HEALTH_PORT_OFFSET,
    }
    return base + offsets[kind]


N = TypeVar("N", int, float)


def _env_number(name: str, default: N, parse: Callable[[str], N], kind: str) -> N:
    raw = env(name)
    if raw is None:
        return default
    try:
        return parse(raw)
    except ValueError as exc:
        raise ConfigError(f"{name} must be {kind}, got {raw!r}") from exc


def env_int(name: str, default: int) -> int:
    return _env_number(name, default, int, "an integer")


def env_float(name: str, default: float) -> float:
    return _env_number(name, default, float, "a number")


def service_url(service: str) -> str:
    port = env_int(f"VIGIL_{service.upper()}_PORT", default_port(service))
    return env(f"VIGIL_{service.upper()}_URL", f"http://127.0.0.1:{port}").rstrip("/")


# An idle web worker holding more than this many MB resident hands its place to a fresh one (0: never),
# after this many seconds without a request (vigil_shared.gunicorn_worker.IdleRecycle).
WEB_RECYCLE_RSS_MB = 80
WEB_RECYCLE_IDLE_SECONDS = 30.0


@dataclass(frozen=True)
class Settings:
    """What one process (a service or the gateway) needs to run."""

    name: str
    database_url: str
    broker_url: str
    broker_dir: Path
    queue_prefix: str
    internal_secret: str
    identity_token_ttl: int
    port: int
    worker_health_port: int
    relay_health_port: int
    bind_host: str
    web_workers: int
    web_threads: int
    web_recycle_rss_mb: int
    web_recycle_idle_seconds: float
    worker_concurrency: int
    relay_interval: float
    max_body_bytes: int
    log_level: str
    production: bool
    encryption_keys: tuple[str, ...] = ()
    blind_index_key: str = ""

    @classmethod
    def from_env(cls, name: str, **overrides: Any) -> Settings:
        upper = name.upper()
        vdir = var_dir()
        production = env("VIGIL_ENV", "development") == "production"
        secret = overrides.pop("internal_secret", None) or env("VIGIL_INTERNAL_SECRET")
        if not secret:
            raise ConfigError(
                "VIGIL_INTERNAL_SECRET is not set. `make run` generates one into var/secrets.env; "
                "in production set the same random value on the gateway and every service."
            )
        values: dict[str, Any] = dict(
            name=name,
            database_url=env(f"VIGIL_{upper}_DATABASE_URL", f"sqlite:///{vdir / (name + '.db')}"),
            broker_url=env("VIGIL_BROKER_URL", f"sqlite:///{vdir / 'broker.sqlite'}"),
            broker_dir=Path(env("VIGIL_BROKER_DIR", str(vdir / "broker"))).resolve(),
            queue_prefix=env("VIGIL_QUEUE_PREFIX", "vigil"),
            internal_secret=secret,
            identity_token_ttl=env_int("VIGIL_IDENTITY_TOKEN_TTL", 60),
            port=env_int(f"VIGIL_{upper}_PORT", default_port(name)),
            worker_health_port=env_int(f"VIGIL_{upper}_WORKER_HEALTH_PORT", default_port(name, "worker"))
            if name in SERVICES
            else 0,
            relay_health_port=env_int(f"VIGIL_{upper}_RELAY_HEALTH_PORT", default_port(name, "relay"))
            if name in SERVICES
            else 0,
            bind_host=env("VIGIL_BIND_HOST", "127.0.0.1"),
            web_workers=env_int("VIGIL_WEB_WORKERS", 1),
            web_threads=env_int("VIGIL_WEB_THREADS", 8),
            web_recycle_rss_mb=env_int("VIGIL_WEB_RECYCLE_RSS_MB", WEB_RECYCLE_RSS_MB),
            web_recycle_idle_seconds=env_float("VIGIL_WEB_RECYCLE_IDLE_SECONDS", WEB_RECYCLE_IDLE_SECONDS),
            worker_concurrency=env_int("VIGIL_WORKER_CONCURRENCY", 1),
            relay_interval=env_float("VIGIL_RELAY_INTERVAL", 0.2),
            max_body_bytes=env_int("VIGIL_MAX_BODY_BYTES", 1024 * 1024),
            log_level=env("VIGIL_LOG_LEVEL", "INFO").upper(),
            production=production,
        )
        if name in SERVICES:
            values["encryption_keys"] = tuple(
                key.strip() for key in (env(f"VIGIL_{upper}_ENCRYPTION_KEYS") or "").split(",") if key.strip()
            )
            values["blind_index_key"] = env(f"VIGIL_{upper}_BLIND_INDEX_KEY", "")
        values.update(overrides)
        if name in SERVICES and (not values["encryption_keys"] or not values["blind_index_key"]):
            raise ConfigError(
                f"VIGIL_{upper}_ENCRYPTION_KEYS and VIGIL_{upper}_BLIND_INDEX_KEY are not set. "
                "`make run` generates them into var/secrets.env; in production generate them with "
                "`python -c 'from vigil_shared.crypto import generate_key; print(generate_key())'`."
            )
        if production and len(values["internal_secret"]) < 32:
            raise ConfigError("VIGIL_INTERNAL_SECRET must be at least 32 characters in production")
        return cls(**values)

    def queue_name(self, service: str | None = None) -> str:
        return f"{self.queue_prefix}.{service or self.name}"
