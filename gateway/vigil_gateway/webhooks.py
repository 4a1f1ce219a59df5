"""Outgoing webhooks: signing (Standard Webhooks v1), destination safety, payloads as the owner may
read them, and one delivery attempt. The worker (:mod:`.worker`) runs them; the API
(:mod:`.api.webhooks`) manages subscriptions. See docs/integrations.md.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import ipaddress
import json
import logging
import math
import secrets
import socket
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import urllib3
from sqlalchemy import ColumnElement, Select, case, false, func, or_, select
from sqlalchemy.orm import Session
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from vigil_shared.config import ConfigError, env, env_float
from vigil_shared.crypto import FieldCipher
from vigil_shared.db import utcnow
from vigil_shared.identity import IDENTITY_HEADER, Identity, sign_identity
from vigil_shared.messaging.contracts import CONTRACTS

from .access import api_key_identity, user_identity
from .models import ApiKey, FeedEvent, Integration, RecordLocation, User, WebhookSubscription

log = logging.getLogger("vigil.webhooks")

SECRET_PREFIX = "whsec_"
# The events a subscription can receive: those about a customer, a property, an invoice, a payment or a
# credit check / ADT PreCheck, each sent with the record as the owner reads it (build_payload).
# Operations (``operation.step_done``, the archive saga's internal reports) have no payload built for
# them: such a type is refused when subscribing, never accepted and then always skipped.
DELIVERED_KINDS = ("customer", "property", "invoice", "payment", "credit")
EVENT_TYPES = frozenset(event_type for event_type, _ in CONTRACTS if event_type.partition(".")[0] in DELIVERED_KINDS)
# About three days: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h and seven times 10 h.
DEFAULT_SCHEDULE = (5, 300, 1800, 7200, 18000, *(36000,) * 7)
EXCERPT_BYTES = 300
DRAIN_BYTES = 64 * 1024  # read past the excerpt to keep a connection; a longer answer closes it
USER_AGENT = "Vigil-Webhooks/1"
MANAGE_PERMISSION = "webhooks.manage"


# --- settings ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WebhookSettings:
    schedule: tuple[float, ...] = DEFAULT_SCHEDULE  # seconds before each retry
    disable_after: float = 5 * 24 * 3600  # failing continuously this long disables a subscription
    timeout: float = 5.0  # connect + read, per attempt
    allowed_networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()  # despite being private
    sweep_interval: float = 1.0
    concurrency: int = 8
    feed_retention_days: int = 30
    # a delivery's body as sent (webhook_bodies) is kept this long; its log (status, attempts) the feed's
    body_retention_days: float = 7

    @classmethod
    def from_env(cls) -> WebhookSettings:
        raw = env("VIGIL_WEBHOOK_RETRY_SCHEDULE")
        try:
            schedule = tuple(float(s) for s in raw.split(",") if s.strip()) if raw else DEFAULT_SCHEDULE
            networks = tuple(
                ipaddress.ip_network(n.strip(), strict=False)
                for n in (env("VIGIL_WEBHOOK_ALLOWED_NETWORKS") or "").split(",")
                if n.strip()
            )
        except ValueError as exc:
            raise ConfigError(f"webhook settings: {exc}") from exc
        body_retention_days = env_float("VIGIL_WEBHOOK_BODY_RETENTION_DAYS", 7)
        if not 0 <= body_retention_days <= 3650:  # NaN included
            raise ConfigError("VIGIL_WEBHOOK_BODY_RETENTION_DAYS must be a number of days from 0 to 3650")
        return cls(
            schedule=schedule,
            disable_after=env_float("VIGIL_WEBHOOK_DISABLE_AFTER", 5 * 24 * 3600.0),
            timeout=env_float("VIGIL_WEBHOOK_TIMEOUT", 5.0),
            allowed_networks=networks,
            sweep_interval=env_float("VIGIL_WEBHOOK_SWEEP_INTERVAL", 1.0),
            concurrency=int(env_float("VIGIL_WEBHOOK_CONCURRENCY", 8)),
            feed_retention_days=int(env_float("VIGIL_FEED_RETENTION_DAYS", 30)),
            body_retention_days=body_retention_days,
        )


# --- secrets and signatures ----------------------------------------------------------------------


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(24)).decode()


def sign(secrets_: Iterable[str], message_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers; one ``v1,`` signature per secret (two during a rotation)."""
    return sign_with_keys(signing_keys(secrets_), message_id, timestamp, body)


def signing_keys(secrets_: Iterable[str]) -> list[bytes]:
    """The HMAC keys of ``whsec_`` secrets, decoded as the reference library does (its ``Webhook``
    object decodes the secret each time it is built: once per delivery, where a claim needs it once
    per subscription)."""
    return [base64.b64decode(secret.removeprefix(SECRET_PREFIX) + "==") for secret in secrets_]


def sign_with_keys(keys: Iterable[bytes], message_id: str, timestamp: datetime, body: str) -> dict[str, str]:
    """:func:`sign` with keys already decoded: the same headers as ``standardwebhooks``' ``Webhook.sign``
    (``v1,`` + base64 of HMAC-SHA256 over ``"{id}.{seconds}.{body}"``; a test compares the two)."""
    seconds = str(math.floor(timestamp.replace(tzinfo=UTC).timestamp()))
    signed = f"{message_id}.{seconds}.{body}".encode()
    signatures = " ".join(
        "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode() for key in keys
    )
    return {"webhook-id": message_id, "webhook-timestamp": seconds, "webhook-signature": signatures}


def verify(secret: str, body: bytes | str, headers: dict[str, str]) -> None:
    """Returns when a signature matches and the timestamp is within 5 minutes; else
    ``WebhookVerificationError`` (also for malformed headers). The body is not parsed."""
    try:
        Webhook(secret).verify(body, headers, json_parse=False)
    except WebhookVerificationError:
        raise
    except (ValueError, TypeError) as exc:  # a signature without a comma, bad base64, …
        raise WebhookVerificationError("Invalid signature header") from exc


def signing_secrets(subscription: WebhookSubscription | Integration, cipher: FieldCipher, now: datetime) -> list[str]:
    current = [cipher.decrypt(subscription.secret)]
    if (
        subscription.previous_secret
        and subscription.previous_secret_until is not None
        and subscription.previous_secret_until > now
    ):
        current.append(cipher.decrypt(subscription.previous_secret))
    return [s for s in current if s]


# --- bodies kept (webhook_bodies) ----------------------------------------------------------------


def body_digest(cipher: FieldCipher, body: str) -> str:
    """The key a body is kept under: a keyed HMAC (the cipher's blind index), so equal bodies share a row
    and the table says nothing of a body (not even a guessed one's presence) without the secret."""
    digest = cipher.blind_index(body, normalize=lambda value: value)
    assert digest is not None  # a body is never empty
    return digest


def seal_body(cipher: FieldCipher, body: str) -> bytes:
    """A body as kept: zlib-compressed, then encrypted (Fernet), the token's bytes without base64."""
    return base64.urlsafe_b64decode(cipher.encrypt_bytes(zlib.compress(body.encode(), 6)))


def open_body(cipher: FieldCipher, sealed: bytes) -> str:
    """The body :func:`seal_body` kept (``DecryptionError`` if no key reads it)."""
    return zlib.decompress(cipher.decrypt_bytes(base64.urlsafe_b64encode(sealed))).decode()


# --- destination safety --------------------------------------------------------------------------


class UnsafeDestination(ValueError):
    pass


@dataclass(frozen=True)
class Destination:
    scheme: str
    host: str
    port: int
    address: str  # the checked address the connection goes to (no second DNS answer)
    target: str  # path and query


def resolve_destination(url: str, settings: WebhookSettings) -> Destination:
    """The URL's checked address; ``UnsafeDestination`` for loopback, private, link-local, multicast,
    reserved or unspecified addresses unless an operator allowed their network."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeDestination("Use an http or https URL with a host name.")
    if parts.username or parts.password:
        raise UnsafeDestination("Credentials in the URL are not accepted.")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise UnsafeDestination("The port is not valid.") from None
    try:
        infos = socket.getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        raise UnsafeDestination("The host name does not resolve.") from None
    addresses = [ipaddress.ip_address(info[4][0]) for info in infos]
    for address in addresses:
        if _forbidden(address) and not any(address in network for network in settings.allowed_networks):
            raise UnsafeDestination("The host resolves to a loopback, private or link-local address.")
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Destination(parts.scheme, parts.hostname, port, str(addresses[0]), target)


NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries (mapped, 6to4, Teredo, NAT64), which a relay may reach."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _forbidden(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Anything but a public unicast address: loopback, private, link-local, reserved, and the shared
    address space (100.64.0.0/10, where some clouds answer metadata) or benchmarking ranges that are
    not "private" yet not public either; an IPv6 address is judged by the IPv4 one it carries too."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return _forbidden(address.ipv4_mapped)
        embedded = _embedded_ipv4(address)
        if embedded is not None and _forbidden(embedded):
            return True
    return (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global
    )


# --- one attempt ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class AttemptResult:
    status_code: int | None
    latency_ms: int
    excerpt: str | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


@dataclass(frozen=True)
class Target:
    """Where one URL's deliveries go now: its checked destination, the pool of connections there and
    the headers every request to it carries."""

    destination: Destination
    pool: urllib3.HTTPConnectionPool
    headers: dict[str, str]
    checked: float  # time.monotonic() of the check


def _fixed_headers(destination: Destination) -> dict[str, str]:
    host = destination.host if destination.port in (80, 443) else f"{destination.host}:{destination.port}"
    return {"Host": host, "Content-Type": "application/json", "User-Agent": USER_AGENT}


class Connections:
    """Keep-alive connections per checked destination (scheme, address, port, host name), shared by the
    deliveries of one process: a receiver getting many deliveries gets them over a few connections.

    A URL's check (its name resolved, the address judged) is kept ``recheck`` seconds: a receiver sent
    a thousand deliveries in a second is not resolved a thousand times (``getaddrinfo`` and the
    address's judging were a tenth of the delivery process's CPU in a burst). Each connection still goes
    to the address that was checked; a name that moves to a forbidden address is refused from the next
    check, at most ``recheck`` seconds later."""

    def __init__(self, per_destination: int = 64, most: int = 500, recheck: float = 5.0):
        self.per_destination = per_destination
        self.most = most
        self.recheck = recheck
        self._pools: dict[tuple[str, str, int, str], urllib3.HTTPConnectionPool] = {}
        self._targets: dict[str, Target] = {}
        self._lock = threading.Lock()

    def target(self, url: str, settings: WebhookSettings) -> Target:
        """The URL's checked target, checked again once ``recheck`` seconds have passed; raises
        ``UnsafeDestination`` (never kept: the next attempt checks again)."""
        now = time.monotonic()
        found = self._targets.get(url)
        if found is not None and now - found.checked < self.recheck:
            return found
        destination = resolve_destination(url, settings)
        found = Target(destination, self.pool(destination, settings), _fixed_headers(destination), now)
        with self._lock:
            if len(self._targets) >= self.most:
                self._targets.pop(next(iter(self._targets)), None)
            self._targets[url] = found
        return found

    def pool(self, destination: Destination, settings: WebhookSettings) -> urllib3.HTTPConnectionPool:
        key = (destination.scheme, destination.address, destination.port, destination.host)
        with self._lock:
            found = self._pools.get(key)
            if found is None:
                if len(self._pools) >= self.most:  # forget the oldest destination (and the URLs going there)
                    oldest = self._pools.pop(next(iter(self._pools)))
                    self._targets = {u: t for u, t in self._targets.items() if t.pool is not oldest}
                    oldest.close()
                found = self._pools[key] = _pool(destination, settings, self.per_destination)
            return found


def _pool(destination: Destination, settings: WebhookSettings, size: int) -> urllib3.HTTPConnectionPool:
    pool_args: dict[str, Any] = dict(
        host=destination.address,
        port=destination.port,
        timeout=urllib3.Timeout(connect=min(2.0, settings.timeout), read=settings.timeout),
        retries=False,
        maxsize=size,
        block=False,
    )
    if destination.scheme == "https":
        return urllib3.HTTPSConnectionPool(
            **pool_args, server_hostname=destination.host, assert_hostname=destination.host
        )
    return urllib3.HTTPConnectionPool(**pool_args)


def post(
    url: str, body: str, headers: dict[str, str], settings: WebhookSettings, connections: Connections | None = None
) -> AttemptResult:
    """One POST: to the checked address only (checked again now), no redirects, short timeouts, the first
    bytes kept. With ``connections`` the connection is kept open for the next delivery there."""
    started = time.monotonic()
    try:
        if connections is not None:
            target = connections.target(url, settings)
            destination, pool, fixed = target.destination, target.pool, target.headers
        else:
            destination = resolve_destination(url, settings)
            pool, fixed = _pool(destination, settings, 1), _fixed_headers(destination)
    except UnsafeDestination as exc:
        return AttemptResult(None, 0, None, str(exc))
    try:
        response = pool.urlopen(
            "POST",
            destination.target,
            body=body.encode(),
            headers={**headers, **fixed},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        try:
            first = response.read(EXCERPT_BYTES, decode_content=False) or b""
            # the rest is read (up to a bound) so the connection can carry the next delivery
            drained = 0
            while chunk := response.read(16 * 1024, decode_content=False):
                drained += len(chunk)
                if drained > DRAIN_BYTES:
                    response.close()  # a long answer: this connection is not reused
                    break
        finally:
            response.release_conn()
        latency = int((time.monotonic() - started) * 1000)
        return AttemptResult(response.status, latency, first.decode("utf-8", "replace"), None)
    except urllib3.exceptions.HTTPError as exc:
        latency = int((time.monotonic() - started) * 1000)
        return AttemptResult(None, latency, None, type(exc).__name__)
    finally:
        if connections is None:
            pool.close()


def station_accounts(listed: Any) -> list[dict[str, Any]]:
    """A central station's account list (a list, or ``{"items": [...]}``) as read from its answer.

    Anything else is malformed (``ValueError``, the drift check's error): read as an empty station, it
    would report every Vigil account missing there."""
    accounts = listed.get("items") if isinstance(listed, dict) else listed
    if not isinstance(accounts, list) or not all(isinstance(account, dict) for account in accounts):
        raise ValueError("the central station's account list is malformed")
    return accounts


def fetch_json(url: str, settings: WebhookSettings, limit: int = 20 * 1024 * 1024) -> Any:
    """GET a JSON document from an outside system (a central station's account list) with the same
    destination checks, no redirects and short timeouts as a webhook delivery. Raises ``RuntimeError``."""
    try:
        destination = resolve_destination(url, settings)
    except UnsafeDestination as exc:
        raise RuntimeError(str(exc)) from None
    cls = urllib3.HTTPSConnectionPool if destination.scheme == "https" else urllib3.HTTPConnectionPool
    extra: dict[str, Any] = (
        {"server_hostname": destination.host, "assert_hostname": destination.host}
        if destination.scheme == "https"
        else {}
    )
    pool = cls(
        host=destination.address,
        port=destination.port,
        timeout=urllib3.Timeout(connect=min(2.0, settings.timeout), read=settings.timeout * 4),
        retries=False,
        maxsize=1,
        **extra,
    )
    try:
        response = pool.urlopen(
            "GET",
            destination.target,
            headers={"Host": destination.host, "Accept": "application/json", "User-Agent": USER_AGENT},
            redirect=False,
            retries=False,
            preload_content=False,
        )
        try:
            data = response.read(limit + 1)
        finally:
            response.release_conn()
    except urllib3.exceptions.HTTPError as exc:
        raise RuntimeError(f"the station could not be reached ({type(exc).__name__})") from None
    finally:
        pool.close()
    if response.status != 200 or len(data) > limit:
        raise RuntimeError(f"the station answered {response.status}")
    try:
        return json.loads(data)
    except ValueError:
        raise RuntimeError("the station's answer is not JSON") from None


def next_delay(attempts: int, settings: WebhookSettings) -> float | None:
    """Seconds before the next attempt after ``attempts`` failed ones; None when the schedule is spent."""
    if attempts - 1 < len(settings.schedule):
        return settings.schedule[attempts - 1]
    return None


# --- whose rights a subscription delivers with ---------------------------------------------------


def owner_identity(session: Session, subscription: WebhookSubscription) -> Identity | None:
    """The owner's rights now; None once the owner is gone, inactive, the key revoked or expired, or
    the owner no longer holds ``webhooks.manage`` (a subscription never outlives the right that made it)."""
    identity: Identity | None = None
    if subscription.owner_key_id is not None:
        key = session.get(ApiKey, subscription.owner_key_id)
        if key is None or key.revoked_at is not None or (key.expires_at is not None and key.expires_at < utcnow()):
            return None
        identity = api_key_identity(session, key, None, None)
    else:
        user = session.get(User, subscription.owner_user_id) if subscription.owner_user_id is not None else None
        if user is None or not user.active:
            return None
        identity = user_identity(session, user, None, None)
    return identity if identity is not None and identity.has(MANAGE_PERMISSION) else None


def without_confidential(identity: Identity) -> Identity:
    """The same rights without any ``confidential.*`` view: a payload never carries one in plaintext."""

    def keep(perms: frozenset[str]) -> frozenset[str]:
        return frozenset(p for p in perms if not p.startswith("confidential."))

    return dataclasses.replace(
        identity,
        permissions=keep(identity.permissions),
        locations={loc: keep(perms) for loc, perms in identity.locations.items()},
    )


# --- payloads ------------------------------------------------------------------------------------

# The right that reads each kind's records at their customer's location, as each service's read API asks
# for it: ``billing.view`` for invoices and payments, ``credit.view`` for credit checks and PreChecks
# (their score, grade, transaction id and reason are the Credit tab's, never shown without it).
VIEW_PERMISSION = {
    "customer": "customers.view",
    "property": "properties.view",
    "invoice": "billing.view",
    "payment": "billing.view",
    "credit": "credit.view",
}
# The record each billing or credit event is about: (service, path of its single read, id in the event,
# key of the record in ``data``). A PreCheck has no single read: see :func:`_precheck`.
RECORD_READS: dict[str, tuple[str, str, str, str]] = {
    "invoice": ("billing", "/api/v1/invoices/{}", "invoice_id", "invoice"),
    "payment": ("billing", "/api/v1/payments/{}", "payment_id", "payment"),
    "credit.check_requested": ("credit", "/api/v1/credit-checks/{}", "check_id", "credit_check"),
    "credit.check_applied": ("credit", "/api/v1/credit-checks/{}", "check_id", "credit_check"),
}


# The kinds whose events carry no location of their own: each is listed (feed, deliveries, replays) at its
# customer's current location, the one its service reads the record at (see :func:`readable_events`).
LOCATED_NOW = ("invoice", "payment", "credit")


def visible(identity: Identity, event_type: str, location_id: int | None) -> bool:
    """Whether a reader may see an event of this type about a record at ``location_id`` (the change feed
    and deletions, which have no record left to ask the service about)."""
    permission = VIEW_PERMISSION.get(event_type.split(".", 1)[0])
    if permission is None:
        return False
    if location_id is None:
        return identity.is_service
    return identity.can(permission, location_id)


def readable_events(statement: Select[Any], identity: Identity) -> tuple[Select[Any], ColumnElement[Any]]:
    """``statement`` (selecting from ``feed_events``) narrowed to the events ``identity`` may see, as the
    change feed shows them, and the column of each event's location.

    An event kept before its customer's location was known (a deletion taken in by one worker process
    while another took in the creation) takes the location learnt since. The same rule serves every
    place that names events: the feed, and a subscription's deliveries and replays, where a delivery of
    an event its owner may not read (skipped when sent) once showed its id, type and time, and a replay
    counted it: how often another office's customers were created, changed or deleted, and when.

    A billing or credit event names no location (:data:`LOCATED_NOW`): it is where its customer is now, as
    the billing and credit services read its record (a customer moving office takes its billing and its
    checks along; the office it left reads none of them, nor a total or a score in the feed), which also
    places right an invoice the gateway took in before hearing of the move that preceded it."""
    statement = statement.outerjoin(RecordLocation, RecordLocation.customer_id == FeedEvent.customer_id)
    location_id = case(
        (
            or_(*(FeedEvent.type.startswith(f"{kind}.") for kind in LOCATED_NOW)),
            func.coalesce(RecordLocation.location_id, FeedEvent.location_id),
        ),
        else_=func.coalesce(FeedEvent.location_id, RecordLocation.location_id),
    )
    if not identity.is_service:
        readable = {kind: sorted(identity.locations_with(permission)) for kind, permission in VIEW_PERMISSION.items()}
        statement = statement.where(
            or_(
                *(
                    FeedEvent.type.startswith(f"{kind}.") & location_id.in_(locations)
                    for kind, locations in readable.items()
                    if locations
                ),
                false(),
            )
        )
    return statement, location_id


def readable_data(data: dict[str, Any], identity: Identity, location_id: int | None) -> dict[str, Any]:
    """An event's data as ``identity`` may read it: the names of changed fields from sections it cannot
    view are left out (the same rule as their values), so is a value the event carries for such a
    field (a customer's Monitored By), and the map saying which (``restricted``) is never passed on."""
    restricted = data.get("restricted") or {}
    shown = {
        key: value
        for key, value in data.items()
        if key != "restricted" and (key not in restricted or identity.can(restricted[key], location_id))
    }
    if restricted and isinstance(shown.get("changed"), list):
        shown["changed"] = [
            name for name in shown["changed"] if name not in restricted or identity.can(restricted[name], location_id)
        ]
    return shown


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class ServiceReader:
    """GETs from the services with a given identity (the subscription owner's, confidential views removed)."""

    def __init__(self, service_urls: dict[str, str], internal_secret: str, ttl: int, timeout: float = 10.0):
        self.service_urls = service_urls
        self.internal_secret = internal_secret
        self.ttl = ttl
        self.pool = urllib3.PoolManager(timeout=urllib3.Timeout(connect=3.0, read=timeout), retries=False)

    def post(self, service: str, path: str, identity: Identity, body: Any) -> Any:
        """The JSON answer of a 2xx; ``RuntimeError`` otherwise."""
        headers = {
            IDENTITY_HEADER: sign_identity(identity, self.internal_secret, self.ttl),
            "Accept": "application/json",
            "Content-Type": "application/json",
        }
        response = self.pool.request(
            "POST", f"{self.service_urls[service]}{path}", body=json.dumps(body).encode(), headers=headers
        )
        if not 200 <= response.status < 300:
            raise RuntimeError(f"the {service} service answered {response.status}")
        return json.loads(response.data)

    def get(self, service: str, path: str, identity: Identity, params: dict[str, Any] | None = None) -> Any | None:
        """The JSON body of a 200; None when the record is gone or out of the identity's reach.
        Raises ``urllib3`` errors and ``RuntimeError`` on a server error (the attempt is retried)."""
        url = f"{self.service_urls[service]}{path}" + (f"?{urlencode(params, doseq=True)}" if params else "")
        headers = {
            IDENTITY_HEADER: sign_identity(identity, self.internal_secret, self.ttl),
            "Accept": "application/json",
        }
        response = self.pool.request("GET", url, headers=headers)
        if response.status >= 500:
            raise RuntimeError(f"the {service} service answered {response.status}")
        if response.status != 200:
            return None
        return json.loads(response.data)


class Prefetched:
    """A reader that answers the reads of single properties from ``records`` (read together, in one
    call, with the same identity) and passes every other read on to ``reader``."""

    def __init__(self, reader: ServiceReader, records: dict[int, Any]):
        self.reader = reader
        self.records = records

    def get(self, service: str, path: str, identity: Identity, params: dict[str, Any] | None = None) -> Any | None:
        prefix = "/api/v1/properties/"
        if service == "property" and params is None and path.startswith(prefix) and path[len(prefix) :].isdigit():
            found = self.records.get(int(path[len(prefix) :]))
            if found is not None:
                return found
        return self.reader.get(service, path, identity, params)


def read_properties(reader: ServiceReader, identity: Identity, property_ids: Iterable[int]) -> dict[int, Any]:
    """The properties ``identity`` may read among ``property_ids``, 100 a call (the list's filter by id).
    One missing here (or an answer that is not a page) is read on its own later, as before."""
    ids = sorted(set(property_ids))
    found: dict[int, Any] = {}
    for start in range(0, len(ids), 100):
        chunk = ids[start : start + 100]
        page = reader.get("property", "/api/v1/properties", identity, {"id": chunk, "per_page": len(chunk)})
        items = page.get("items") if isinstance(page, dict) else None
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and item.get("id") in chunk:
                found[item["id"]] = item
    return found


# Record fields that are bookkeeping rather than data: never reported as a change.
_NOT_FIELDS = frozenset({"id", "version", "created_at", "updated_at"})


def build_payload(event: FeedEvent, identity: Identity, reader: ServiceReader) -> dict[str, Any] | None:
    """The body a subscription owner receives for ``event``; None when they may not read the record.

    ``data`` is the event's own data plus the record as the owner reads it now (other locations'
    records are not sent, hidden sections are absent, confidential values masked) and, for updates,
    ``changes``: ``{field: {"old", "new"}}`` from the record's history when the owner may read it.
    """
    reading = without_confidential(identity)
    kind, _, action = event.type.partition(".")
    data = readable_data(event.data, reading, event.location_id)
    if action == "deleted":
        if not visible(reading, event.type, event.location_id):
            return None
    elif kind == "customer" and "customer_id" not in data:
        # archive and unarchive name a parent and its sub-customers (``customer_ids``): the records the
        # owner may read are sent, and nothing when they may read none; ``customer_ids`` names those
        # only (another office's id, or that it is a sub-customer of this parent, is not theirs to learn)
        readable = [
            (int(customer_id), record)
            for customer_id in data.get("customer_ids") or []
            if (record := reader.get("customer", f"/api/v1/customers/{int(customer_id)}", reading)) is not None
        ]
        if not readable:
            return None
        data["customer_ids"] = [customer_id for customer_id, _ in readable]
        data["customers"] = [record for _, record in readable]
    elif kind == "customer":
        record = reader.get("customer", f"/api/v1/customers/{int(data['customer_id'])}", reading)
        if record is None:
            return None
        data["customer"] = record
        if action == "updated":
            data["changes"] = _customer_changes(event, record, reading, reader)
            data["changed"] = sorted(data["changes"])
    elif kind == "property":
        record = reader.get("property", f"/api/v1/properties/{int(data['property_id'])}", reading)
        if record is None:
            return None
        data["property"] = record
        if "changed" in data:
            data["changed"] = [name for name in data["changed"] if name in record]
    elif kind in ("invoice", "payment", "credit"):
        if not _billing_or_credit(event, data, reading, reader):
            return None
    else:
        return None
    return {"id": event.event_id, "type": event.type, "timestamp": iso(event.occurred_at), "data": data}


def _billing_or_credit(event: FeedEvent, data: dict[str, Any], reading: Identity, reader: ServiceReader) -> bool:
    """Adds to ``data`` the invoice, payment (with its billing method), credit check or PreCheck the event
    is about, as the owner reads it now through the billing or credit service's own read (its rights at
    the customer's location now, its masks: a billing method shows its last four digits only); False
    when the owner may not read it (another office, no ``billing.view`` / ``credit.view``) or it is gone.

    The service decides, as for customers and properties. A credit check's result (score, grade,
    transaction id, reason, and the score and tracking number ``credit.check_applied`` carries) is the
    Credit tab's: besides the credit service's answer (it reads a check only to ``credit.view``), an
    owner holding ``credit.view`` nowhere is never sent a credit event, whatever a service answers."""
    kind = event.type.partition(".")[0]
    if not reading.can_anywhere(VIEW_PERMISSION[kind]):
        return False
    if event.type == "credit.precheck_requested":
        record, key = _precheck(data, reading, reader), "precheck"
    else:
        service, path, id_field, key = RECORD_READS.get(event.type) or RECORD_READS[kind]
        record = reader.get(service, path.format(int(data[id_field])), reading)
    if not isinstance(record, dict):
        return False
    if kind == "payment":
        method_id = record.get("billing_method_id")
        method = (
            reader.get("billing", f"/api/v1/billing-methods/{int(method_id)}", reading)
            if isinstance(method_id, int)
            else None
        )
        record = record | {"billing_method": _masked_method(method)}
    data[key] = record
    return True


def _precheck(data: dict[str, Any], identity: Identity, reader: ServiceReader) -> dict[str, Any] | None:
    """The PreCheck ``data`` names, from its customer's PreCheck history (the credit service's read)."""
    found = reader.get("credit", f"/api/v1/customers/{int(data['customer_id'])}/precheck", identity)
    history = found.get("history") if isinstance(found, dict) else None
    for item in history if isinstance(history, list) else []:
        if isinstance(item, dict) and item.get("id") == data.get("precheck_id"):
            return item
    return None


# A billing method as the billing API shows it: brand, last four, expiry and holder, never a number.
METHOD_FIELDS = ("id", "customer_id", "location_id", "kind", "brand", "last4", "exp_month", "exp_year", "holder")


def _masked_method(method: Any) -> dict[str, Any] | None:
    """The billing method the billing API answered (None when removed or not readable), its fields only;
    ``last4`` is the last four characters whatever came (a longer value is never passed on)."""
    if not isinstance(method, dict):
        return None
    shown = {name: method.get(name) for name in METHOD_FIELDS if name in method}
    if shown.get("last4") is not None:
        shown["last4"] = str(shown["last4"])[-4:]
    return shown


def _customer_changes(
    event: FeedEvent, record: dict[str, Any], identity: Identity, reader: ServiceReader
) -> dict[str, dict[str, Any]]:
    changed = [name for name in event.data.get("changed", []) if name not in _NOT_FIELDS]
    entries: list[dict[str, Any]] = []
    if event.request_id:
        page = reader.get(
            "customer", f"/api/v1/customers/{int(event.data['customer_id'])}/history", identity, {"per_page": 100}
        )
        entries = [
            item
            for item in (page or {}).get("items", [])
            if item.get("request_id") == event.request_id and item.get("field") in changed
        ]
    changes: dict[str, dict[str, Any]] = {}
    for entry in reversed(entries):  # oldest first: the first old value and the last new value win
        slot = changes.setdefault(entry["field"], {"old": entry.get("old_value")})
        slot["new"] = entry.get("new_value")
    for name in changed:  # no history to read (or no right to): the field's new value, if visible
        if name not in changes and name in record:
            changes[name] = {"new": record[name]}
    return changes


def due_subscriptions(session: Session, event_type: str | None) -> list[WebhookSubscription]:
    """The enabled subscriptions that want ``event_type`` (every enabled one for None)."""
    rows = session.scalars(select(WebhookSubscription).where(WebhookSubscription.enabled.is_(True))).all()
    return [s for s in rows if event_type is None or s.event_types is None or event_type in s.event_types]


def disable(subscription: WebhookSubscription, reason: str) -> None:
    subscription.enabled = False
    subscription.disabled_reason = reason[:300]
    subscription.disabled_at = utcnow()
    log.warning("webhook subscription disabled", extra={"subscription_id": subscription.id, "reason": reason})


def lease(settings: WebhookSettings) -> timedelta:
    """How long a claimed delivery is left alone before the sweep sends it again (a lost task)."""
    return timedelta(seconds=max(30.0, settings.timeout * 4))
