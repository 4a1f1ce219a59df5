"""Incoming messages from central stations: signature, timestamp window, replayed ids, rate limit, and
the intake that writes them in groups.

A request verifies its message and hands it to this process's :class:`Intake`, whose one thread takes
every message waiting, counts them against their integration's rate limit (one upsert per integration,
shared by every gateway process), keeps their ids (one insert), forwards them to the property service
(one call per central station, one transaction there) and commits; then each request answers. While a
group is written the next one gathers, so the cost of a round trip and a commit is shared by every
message that arrived meanwhile, and nothing is answered before it is in the signal log.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from sqlalchemy import bindparam, text
from sqlalchemy.exc import DBAPIError
from werkzeug.datastructures import Headers

from vigil_shared.crypto import FieldCipher
from vigil_shared.db import Database, UTCDateTime, utcnow
from vigil_shared.errors import UNAUTHENTICATED, Problem, conflict
from vigil_shared.identity import IDENTITY_HEADER, service_identity, sign_identity
from vigil_shared.web import REQUEST_ID_HEADER

from . import webhooks
from .models import Integration
from .proxy import UpstreamPool
from .settings import GatewaySettings

log = logging.getLogger("vigil.integrations")

TOLERANCE_SECONDS = 300
RATE_LIMITED = "urn:vigil:problem:rate-limited"
MAX_GROUP = 500
WINDOW = 0.004  # at most this long a gathered group waits for the requests still being verified

# A group's message ids in one constant statement per integration (compiled once, prepared by the
# server), the ids passed as one JSON array; the ids returned are the new ones, the others replays.
_KEEP = (
    "INSERT INTO incoming_messages (integration_id, message_id, received_at) "
    "SELECT :integration_id, value, :now FROM {ids} ON CONFLICT DO NOTHING RETURNING message_id"
)
KEEP = tuple(
    text(_KEEP.format(ids=ids)).bindparams(bindparam("now", type_=UTCDateTime()))
    for ids in ("json_array_elements_text(CAST(:ids AS json))", "json_each(:ids) WHERE true")
)  # [PostgreSQL, SQLite]; SQLite needs the WHERE to tell the ON CONFLICT from a join's ON


# --- rate limits ---------------------------------------------------------------------------------


class RateLimiter(Protocol):
    def take(self, name: str, per_minute: int, count: int = 1) -> tuple[int, int]:
        """Counts ``count`` messages in the current minute of ``name``; returns how many of them fit
        under ``per_minute`` and the seconds until the next minute."""
        ...


# ``excluded`` is the row that was to be inserted; both PostgreSQL and SQLite name it so.
TAKE = text(
    "INSERT INTO rate_windows (name, minute, count) VALUES (:name, :minute, :count) "
    "ON CONFLICT (name) DO UPDATE SET "
    "count = CASE WHEN rate_windows.minute = excluded.minute THEN rate_windows.count + excluded.count "
    "ELSE excluded.count END, minute = excluded.minute "
    "RETURNING count"
)


class DatabaseRateLimiter:
    """A fixed one-minute window per name, one row in the gateway's database, counted with one atomic
    upsert: every gateway process sharing the database shares the limit.

    The upsert is its own transaction, on an autocommit connection: one round trip, and the window's
    row is locked only while the statement runs (not while the messages it counted are forwarded), so
    the gateway processes of one integration never wait for each other's groups."""

    def __init__(self, db: Database):
        self.db = db

    def take(self, name: str, per_minute: int, count: int = 1) -> tuple[int, int]:
        now = time.time()
        minute = int(now // 60)
        for attempt in (1, 2):
            try:
                with self.db.read_engine.connect() as conn:
                    total = int(conn.execute(TAKE, {"name": name, "minute": minute, "count": count}).scalar_one())
                break
            except DBAPIError as error:  # no liveness probe: a connection the database dropped is retried once
                if not error.connection_invalidated or attempt == 2:
                    raise
        before = total - count
        return max(0, min(count, per_minute - before)), max(1, int(60 - now % 60))


def rate_limited(per_minute: int, retry_after: int) -> Problem:
    return Problem(
        429,
        f"This integration may send {per_minute} messages a minute.",
        type=RATE_LIMITED,
        headers={"Retry-After": str(retry_after)},
    )


# --- verifying -----------------------------------------------------------------------------------


def refused(detail: str) -> Problem:
    return Problem(401, detail, type=UNAUTHENTICATED)


@dataclass(frozen=True)
class Station:
    """What the intake needs of an integration, kept a moment so a message costs no query."""

    id: int
    name: str
    per_minute: int
    keys: tuple[bytes, ...]  # the current secret's HMAC key, and the previous one's during a rotation's overlap
    until: float  # monotonic time after which it is read again
    monitoring_company_id: int | None = None  # whose station it is: which properties its messages reach


def signing_key(secret: str) -> bytes:
    """A ``whsec_…`` secret's HMAC key, decoded as the Standard Webhooks libraries do."""
    return base64.b64decode(secret.removeprefix("whsec_") + "==")


class Stations:
    """Integrations as last read, for ``ttl`` seconds: disabling, deleting or renaming one takes effect
    within that; a rotated secret at once (a signature that does not match reads the integration again)."""

    def __init__(self, ttl: float = 2.0):
        self.ttl = ttl
        self._known: dict[int, Station | None] = {}
        self._lock = threading.Lock()

    def get(
        self,
        integration_id: int,
        read: Callable[[], Integration | None],
        cipher: Callable[[], FieldCipher],
        *,
        fresh: bool = False,
    ) -> Station | None:
        """``read`` and ``cipher`` are called only when the integration is read again."""
        now = time.monotonic()
        known = self._known.get(integration_id)  # one dict read: atomic
        if not fresh and known is not None and known.until > now:
            return known
        integration = read()
        station = None
        if integration is not None and integration.enabled:
            secrets = webhooks.signing_secrets(integration, cipher(), datetime.now(UTC))
            station = Station(
                integration.id,
                integration.name,
                integration.rate_limit_per_minute,
                tuple(signing_key(secret) for secret in secrets),
                now + self.ttl,
                integration.monitoring_company_id,
            )
        with self._lock:
            if len(self._known) > 10_000:
                self._known.clear()
            self._known[integration_id] = station
        return station


def verify(keys: tuple[bytes, ...], body: bytes, headers: Headers | Mapping[str, str]) -> str:
    """The message id, once a ``v1`` signature matches one of ``keys`` and the timestamp is within 5
    minutes (401 otherwise); ``headers`` are looked up case-insensitively (a request's headers).

    Standard Webhooks v1 as its reference library checks it, with one HMAC per key however many
    signatures the header carries, each compared in constant time (``hmac.compare_digest``)."""
    message_id = headers.get("webhook-id") or ""
    signatures = headers.get("webhook-signature") or ""
    if not message_id or len(message_id) > 100 or not signatures:
        raise refused("Sign the message: webhook-id, webhook-timestamp and webhook-signature are required.")
    try:
        sent = int(headers.get("webhook-timestamp") or "")
    except ValueError:
        raise refused("webhook-timestamp must be Unix seconds.") from None
    if abs(time.time() - sent) > TOLERANCE_SECONDS:
        raise refused("webhook-timestamp is outside the 5-minute window.")
    signed = b"%s.%d.%s" % (message_id.encode(), sent, body)
    expected = [hmac.digest(key, signed, "sha256") for key in keys]
    for versioned in signatures.split(" "):
        version, comma, signature = versioned.partition(",")
        if not comma or "," in signature:
            raise refused("The signature header is malformed.")
        if version != "v1":
            continue
        try:
            given = base64.b64decode(signature)
        except ValueError:
            raise refused("The signature header is malformed.") from None
        if any(hmac.compare_digest(digest, given) for digest in expected):
            return message_id
    raise refused("The signature does not match.")


# --- the intake ----------------------------------------------------------------------------------


@dataclass
class Message:
    """One verified, valid message waiting for its group to be written."""

    integration_id: int
    station: str  # the integration's name: the central station the property service logs
    per_minute: int
    message_id: str
    forward: dict[str, Any]  # what the property service logs
    request_id: str = ""
    property_id: int | None = None
    problem: Problem | None = None
    done: threading.Event = field(default_factory=threading.Event)


# (central station, request id, messages) -> each message's property id (None: unmatched)
Forward = Callable[[str, str, list[dict[str, Any]]], list[int | None]]


def unavailable() -> Problem:
    return Problem(503, "The message could not be recorded; send it again.", headers={"Retry-After": "1"})


def already_received() -> Problem:
    return conflict("This webhook-id was already received; it is not applied twice.")


class Intake:
    """Writes the messages of this gateway process in groups (see the module's description)."""

    def __init__(
        self, db: Database, limiter: RateLimiter, forward: Forward, *, wait: float = 30.0, window: float = WINDOW
    ):
        self.db = db
        self.limiter = limiter
        self.forward = forward
        self.wait = wait
        self.window = window
        self._ready = threading.Condition()
        self._queue: list[Message] = []
        self._coming = 0  # requests being verified that will (most likely) join the next group
        self._pid: int | None = None

    def _start(self) -> None:
        """Under ``_ready``: starts the writing thread on first use in this process (or a forked child)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._queue, self._coming = [], 0
            threading.Thread(target=self._run, name="vigil-intake", daemon=True).start()

    @contextlib.contextmanager
    def arriving(self) -> Iterator[Callable[[Message], int | None]]:
        """Wraps a request's verifying: while it runs, the group being gathered waits for its message (at
        most ``window`` seconds), so a group holds what the request threads bring instead of what
        happened to be queued. Yields :meth:`submit` for the message; a refused request just leaves."""
        with self._ready:
            self._start()
            self._coming += 1
        pending = True

        def submit(message: Message) -> int | None:
            nonlocal pending
            pending = False
            return self.submit(message, counted=True)

        try:
            yield submit
        finally:
            if pending:
                with self._ready:
                    self._coming -= 1
                    self._ready.notify_all()

    def submit(self, message: Message, *, counted: bool = False) -> int | None:
        """The message's property id (None: kept unmatched) once it is written; its problem otherwise
        (429 over the rate limit, 409 an id already received, 503 not written)."""
        with self._ready:
            self._start()
            if counted:
                self._coming -= 1
            self._queue.append(message)
            self._ready.notify_all()
        if not message.done.wait(self.wait):
            raise unavailable()
        if message.problem is not None:
            raise message.problem
        return message.property_id

    def _run(self) -> None:
        while True:
            with self._ready:
                while not self._queue:
                    self._ready.wait()
                # gather: while requests still being verified are on their way, wait for them (bounded)
                deadline = time.monotonic() + self.window
                while self._coming > 0 and len(self._queue) < MAX_GROUP:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    self._ready.wait(left)
                group, self._queue = self._queue[:MAX_GROUP], self._queue[MAX_GROUP:]
            try:
                self.write(group)
            except Exception:  # the database is down: every message of the group is sent again by its station
                log.exception("incoming messages not written")
                for message in group:
                    if message.problem is None:  # not committed: its id is not kept
                        message.problem = unavailable()
            finally:
                for message in group:
                    message.done.set()

    def write(self, group: list[Message]) -> None:
        """Counts, keeps and forwards one group; sets each message's property id or problem."""
        by_integration: dict[int, list[Message]] = {}
        for message in group:
            by_integration.setdefault(message.integration_id, []).append(message)
        for integration_id, messages in by_integration.items():
            allowed, retry_after = self.limiter.take(
                f"integration:{integration_id}", messages[0].per_minute, len(messages)
            )
            for message in messages[allowed:]:
                message.problem = rate_limited(message.per_minute, retry_after)
        seen: set[tuple[int, str]] = set()
        candidates: list[Message] = []
        for message in group:
            if message.problem is not None:
                continue
            key = (message.integration_id, message.message_id)
            if key in seen:  # the same id twice in one group
                message.problem = already_received()
            else:
                seen.add(key)
                candidates.append(message)
        if not candidates:
            return
        ids: dict[int, list[str]] = {}
        for message in candidates:
            ids.setdefault(message.integration_id, []).append(message.message_id)
        with self.db.engine.begin() as conn:  # Core, not the ORM: this runs once per group, on every group
            keep, now = KEEP[conn.dialect.name == "sqlite"], utcnow()
            kept = {
                (integration_id, message_id)
                for integration_id, message_ids in ids.items()
                for (message_id,) in conn.execute(
                    keep, {"integration_id": integration_id, "ids": json.dumps(message_ids), "now": now}
                )
            }
            by_station: dict[str, list[Message]] = {}
            for message in candidates:
                if (message.integration_id, message.message_id) in kept:
                    by_station.setdefault(message.station, []).append(message)
                else:
                    message.problem = already_received()
            try:
                for station, messages in by_station.items():
                    found = self.forward(station, messages[0].request_id, [m.forward for m in messages])
                    for message, property_id in zip(messages, found, strict=True):
                        message.property_id = property_id
            except Exception:
                # the ids are not kept (the transaction rolls back): the stations' retries are applied
                for messages in by_station.values():
                    for message in messages:
                        message.problem = unavailable()
                raise


def property_forward(pool: UpstreamPool, settings: GatewaySettings) -> Forward:
    """Sends one central station's messages to the property service's batch endpoint."""
    url = f"{settings.service_urls['property']}/api/v1/monitoring/messages/batch"

    def forward(station: str, request_id: str, items: list[dict[str, Any]]) -> list[int | None]:
        identity = service_identity(f"integration:{station}", permissions={"integrations.manage"})
        headers = {
            IDENTITY_HEADER: sign_identity(identity, settings.base.internal_secret, settings.base.identity_token_ttl),
            REQUEST_ID_HEADER: request_id,
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        response = pool.request("POST", url, body=json.dumps({"items": items}).encode(), headers=headers)
        if response.status != 200:
            raise RuntimeError(f"the property service answered {response.status}")
        found = json.loads(response.data)["property_ids"]
        if len(found) != len(items):
            raise RuntimeError("the property service answered for another number of messages")
        return list(found)

    return forward
