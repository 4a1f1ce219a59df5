"""The gateway's worker: it receives every domain event (``gateway.handle_event.v1``), keeps it for the
change feed, and delivers it to the webhook subscriptions that want it (``gateway.deliver_webhook.v1``).

Each delivery runs in its own task on a thread pool, so a slow receiver holds one thread for at most
the timeout and never the others. Retries are rows, not held messages: a failed attempt sets
``next_attempt_at`` and a sweep in this process sends the task again when it is due (also a task
lost with a dead worker, once its lease passes).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import Any

import urllib3
from celery import Celery
from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from vigil_shared.config import env_float
from vigil_shared.crypto import FieldCipher
from vigil_shared.db import Database, utcnow
from vigil_shared.identity import service_identity
from vigil_shared.messaging.celery_app import make_celery, send_to_queue
from vigil_shared.messaging.contracts import handle_event_task, parse_event

from . import webhooks
from .models import (
    AuthState,
    FeedEvent,
    IncomingMessage,
    Integration,
    RecordLocation,
    WebhookAttempt,
    WebhookDelivery,
    WebhookSubscription,
)
from .settings import GatewaySettings

log = logging.getLogger("vigil.webhooks")

DELIVER_TASK = "gateway.deliver_webhook.v1"
DELIVER_MANY_TASK = "gateway.deliver_webhooks.v1"  # an event's deliveries, one task
FAST_SECONDS = 1.0  # a delivery answered by then is recorded with its event's others
IN_FLIGHT_LIMIT = 16  # attempts one subscription may have waiting for its receiver in this process
PAYLOAD_CACHE_SECONDS = 10.0


@dataclass
class WebhookRuntime:
    settings: GatewaySettings
    hooks: webhooks.WebhookSettings
    db: Database
    celery: Celery
    cipher: FieldCipher
    reader: webhooks.ServiceReader
    drift_interval: float = 3600.0
    _cache: dict[tuple[str, str, int], tuple[float, str | None]] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)
    _intake_lock: threading.Lock = field(default_factory=threading.Lock)
    _owners: dict[tuple[int | None, int | None], tuple[int | None, float, Any]] = field(default_factory=dict)
    connections: webhooks.Connections = field(default_factory=webhooks.Connections)
    _in_flight: dict[int, int] = field(default_factory=dict)  # subscription: attempts being sent now
    _senders: ThreadPoolExecutor | None = None
    _senders_pid: int | None = None

    @classmethod
    def build(cls, settings: GatewaySettings, hooks: webhooks.WebhookSettings | None = None) -> WebhookRuntime:
        base = settings.base
        return cls(
            settings=settings,
            hooks=hooks or webhooks.WebhookSettings.from_env(),
            db=Database(base.database_url),
            celery=make_celery(base),
            cipher=settings.webhook_cipher(),
            reader=webhooks.ServiceReader(
                settings.service_urls, base.internal_secret, base.identity_token_ttl, settings.upstream_timeout
            ),
            drift_interval=env_float("VIGIL_DRIFT_CHECK_INTERVAL", 3600.0),
        )

    # --- sending tasks ---------------------------------------------------------------------------

    def enqueue(self, delivery_id: int, token: int) -> None:
        send_to_queue(self.celery, DELIVER_TASK, self.settings.base.queue_name(), [delivery_id, token])

    def enqueue_many(self, pairs: list[tuple[int, int]]) -> None:
        """An event's deliveries as one task (a single one as the one-delivery task)."""
        if len(pairs) == 1:
            self.enqueue(*pairs[0])
        elif pairs:
            send_to_queue(self.celery, DELIVER_MANY_TASK, self.settings.base.queue_name(), [[list(p) for p in pairs]])

    # --- intake ----------------------------------------------------------------------------------

    def receive(self, message: dict[str, Any]) -> bool:
        """Keeps one event for the feed and creates its deliveries; False for a repeat (the inbox).

        Its one short transaction runs one at a time in this process, so the feed's order is the order
        the broker delivered the events; the deliveries it creates are sent after it, concurrently."""
        event = parse_event(message)
        data = event.data
        location_id = self._location_of(data)
        customer_id = data.get("customer_id") or data.get("to_customer_id")
        with self._intake_lock:
            created = self._keep(event, data, location_id, customer_id)
        if created is None:
            return False
        self.enqueue_many(created)
        return True

    def _keep(
        self, event: Any, data: dict[str, Any], location_id: int | None, customer_id: int | None
    ) -> list[tuple[int, int]] | None:
        created: list[tuple[int, int]] = []
        with self.db.transaction() as session:
            row = FeedEvent(
                event_id=event.id,
                type=event.type,
                version=event.version,
                occurred_at=event.occurred_at,
                received_at=utcnow(),
                source=event.source,
                request_id=event.request_id,
                data=data,
                location_id=location_id,
                customer_id=customer_id,
            )
            session.add(row)
            try:
                session.flush()
            except IntegrityError:
                session.rollback()
                return None
            if event.type.startswith("customer.") and data.get("location_id") is not None:
                found = session.get(RecordLocation, data["customer_id"])
                if found is None:
                    session.add(RecordLocation(customer_id=data["customer_id"], location_id=data["location_id"]))
                else:
                    found.location_id = data["location_id"]
                # an event of this customer that arrived first (a deletion before its creation) gets it too
                session.execute(
                    update(FeedEvent)
                    .where(FeedEvent.customer_id == data["customer_id"], FeedEvent.location_id.is_(None))
                    .values(location_id=data["location_id"])
                    .execution_options(synchronize_session=False)
                )
            due = utcnow() + webhooks.lease(self.hooks)
            deliveries = [
                WebhookDelivery(
                    subscription_id=subscription.id,
                    event_id=event.id,
                    event_type=event.type,
                    position=row.position,
                    status="pending",
                    attempts=0,
                    next_attempt_at=due,
                )
                for subscription in webhooks.due_subscriptions(session, event.type)
            ]
            session.add_all(deliveries)
            session.flush()  # one multi-row insert
            created = [(delivery.id, 0) for delivery in deliveries]
        return created

    def _location_of(self, data: dict[str, Any]) -> int | None:
        if data.get("location_id") is not None:
            return int(data["location_id"])
        customer_id = data.get("customer_id") or data.get("to_customer_id")
        if customer_id is None:
            return None
        with self.db.transaction() as session:
            known = session.get(RecordLocation, customer_id)
            if known is not None:
                return known.location_id
        record = self.reader.get(
            "customer",
            f"/api/v1/customers/{int(customer_id)}",
            service_identity("gateway", permissions={"customers.view"}),
        )
        location_id = record.get("location_id") if isinstance(record, dict) else None
        if record is not None:
            with self.db.transaction() as session:
                if session.get(RecordLocation, customer_id) is None:
                    session.add(RecordLocation(customer_id=customer_id, location_id=location_id))
        return location_id

    # --- delivery --------------------------------------------------------------------------------

    def deliver(self, delivery_id: int, token: int) -> str:
        """One attempt of one delivery, if it is still pending and ``token`` is its attempt count (a
        second copy of the same task finds the count moved on and does nothing)."""
        return self.deliver_many([(delivery_id, token)], fast=None)[0]

    def deliver_many(self, pairs: list[tuple[int, int]], fast: float | None = FAST_SECONDS) -> list[str]:
        """One attempt of each delivery (an event's, to all its subscriptions): claimed together in one
        transaction, sent at once over kept-alive connections (one sender thread each), and recorded
        together. A receiver slower than ``fast`` seconds does not hold the others: what has answered
        by then is recorded, and each late one is recorded when it answers (or times out). A
        subscription already waiting on ``IN_FLIGHT_LIMIT`` deliveries in this process gets this one
        a second later, from the sweep, so a slow receiver cannot take every sender thread (there are four
        per worker thread)."""
        now = utcnow()
        outcomes: dict[int, str] = {}
        sends: list[tuple[int, int, int, str, str, dict[str, str]]] = []  # delivery, attempts, subscription, url…
        with self.db.transaction() as session:
            # one query each for the deliveries, their subscriptions and the auth epoch, not one per delivery
            rows = session.scalars(select(WebhookDelivery).where(WebhookDelivery.id.in_([d for d, _ in pairs]))).all()
            session.scalars(
                select(WebhookSubscription).where(WebhookSubscription.id.in_({r.subscription_id for r in rows}))
            ).all()
            session.info["auth_epoch"] = session.scalar(select(AuthState.epoch).where(AuthState.id == 1))
            for delivery_id, token in pairs:
                claimed = self._claim(session, delivery_id, token, now)
                if isinstance(claimed, str):
                    outcomes[delivery_id] = claimed
                else:
                    sends.append((delivery_id, token + 1, *claimed))
        futures = {
            self._send(subscription_id, url, body, headers): (delivery_id, attempts, subscription_id)
            for delivery_id, attempts, subscription_id, url, body, headers in sends
        }
        done, late = wait(futures, timeout=fast)
        if done:
            outcomes |= self._record_many([(*futures[f][:2], f.result()) for f in done])
        for future in late:
            delivery_id, attempts, _ = futures[future]
            future.add_done_callback(partial(self._record_late, delivery_id, attempts))
            outcomes[delivery_id] = "sending"
        return [outcomes[delivery_id] for delivery_id, _ in pairs]

    def _claim(self, session, delivery_id: int, token: int, now):
        """The subscription, URL, body and signed headers of a delivery claimed for its next attempt,
        or what became of it (``stale``, ``cancelled``, ``skipped``, ``deferred``)."""
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None or delivery.status != "pending" or delivery.attempts != token:
            return "stale"
        subscription = session.get(WebhookSubscription, delivery.subscription_id)
        if subscription is None or not subscription.enabled:
            delivery.status = "cancelled"
            delivery.next_attempt_at = None
            return "cancelled"
        with self._cache_lock:
            busy = self._in_flight.get(subscription.id, 0) >= IN_FLIGHT_LIMIT
        if busy:  # its receiver is slow: the sweep sends this one a moment later
            delivery.next_attempt_at = now + timedelta(seconds=1)
            return "deferred"
        claimed = session.execute(
            update(WebhookDelivery)
            .where(WebhookDelivery.id == delivery_id, WebhookDelivery.attempts == token)
            .values(attempts=token + 1, next_attempt_at=now + webhooks.lease(self.hooks))
            .execution_options(synchronize_session=False)
        )
        if getattr(claimed, "rowcount", 1) != 1:
            return "stale"
        # Every attempt, retries included, goes out with the owner's rights of now: a payload kept
        # from the first attempt would outlive a deactivation or a location taken away.
        identity = self._owner(session, subscription)
        if identity is None:
            webhooks.disable(subscription, "The owner of this subscription can no longer sign in or manage webhooks.")
            delivery.status = "cancelled"
            return "cancelled"
        built = self._payload(session, delivery.event_id, identity)
        if built is None:
            delivery.status = "skipped"  # not the owner's to read
            delivery.next_attempt_at = None
            return "skipped"
        delivery.payload = self.cipher.encrypt(built)  # the body last sent, kept encrypted
        body = built
        headers = webhooks.sign(webhooks.signing_secrets(subscription, self.cipher, now), delivery.event_id, now, body)
        return subscription.id, subscription.url, body, headers

    def _send(self, subscription_id: int, url: str, body: str, headers: dict[str, str]) -> Future:
        with self._cache_lock:
            self._in_flight[subscription_id] = self._in_flight.get(subscription_id, 0) + 1
            if self._senders is None or self._senders_pid != os.getpid():
                self._senders = ThreadPoolExecutor(max(4, self.hooks.concurrency * 4), thread_name_prefix="webhook")
                self._senders_pid = os.getpid()
            senders = self._senders

        def attempt() -> webhooks.AttemptResult:
            try:
                return webhooks.post(url, body, headers, self.hooks, self.connections)
            finally:
                with self._cache_lock:
                    self._in_flight[subscription_id] -= 1

        return senders.submit(attempt)

    def _record_late(self, delivery_id: int, attempts: int, future: Future) -> None:
        try:
            self._record_many([(delivery_id, attempts, future.result())])
        except Exception:  # the database is down: the lease passes and the sweep sends it again
            log.exception("webhook attempt not recorded", extra={"delivery_id": delivery_id})

    def _owner(self, session, subscription: WebhookSubscription):
        """The owner's identity, resolved again whenever anyone's access changed (the auth epoch moved,
        as the gateway's own identity cache does) and at least every few seconds (a key's expiry)."""
        if "auth_epoch" in session.info:
            epoch = session.info["auth_epoch"]
        else:
            epoch = session.scalar(select(AuthState.epoch).where(AuthState.id == 1))
        key = (subscription.owner_user_id, subscription.owner_key_id)
        now = time.monotonic()
        with self._cache_lock:
            cached = self._owners.get(key)
        if cached is not None and cached[0] == epoch and now - cached[1] < PAYLOAD_CACHE_SECONDS:
            return cached[2]
        identity = webhooks.owner_identity(session, subscription)
        with self._cache_lock:
            self._owners[key] = (epoch, now, identity)
        return identity

    def _payload(self, session, event_id: str, identity) -> str | None:
        """The body for one event as ``identity`` reads it; built once per event and set of rights for a
        few seconds, so ten subscriptions of one owner cost one read of the record, not ten."""
        key = (event_id, identity.subject, hash(identity.to_claims().__repr__()))
        now = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < PAYLOAD_CACHE_SECONDS:
                return cached[1]
        event = session.scalar(select(FeedEvent).where(FeedEvent.event_id == event_id))
        payload = webhooks.build_payload(event, identity, self.reader) if event is not None else None
        body = json.dumps(payload, separators=(",", ":"), default=str) if payload is not None else None
        with self._cache_lock:
            if len(self._cache) > 5000:
                self._cache = {k: v for k, v in self._cache.items() if now - v[0] < PAYLOAD_CACHE_SECONDS}
            self._cache[key] = (now, body)
        return body

    def _record(self, delivery_id: int, attempts: int, result: webhooks.AttemptResult) -> str:
        return self._record_many([(delivery_id, attempts, result)])[delivery_id]

    def _record_many(self, results: list[tuple[int, int, webhooks.AttemptResult]]) -> dict[int, str]:
        """Records attempts in one transaction; what became of each delivery."""
        with self.db.transaction() as session:
            return {
                delivery_id: self._apply(session, delivery_id, attempts, result)
                for delivery_id, attempts, result in results
            }

    def _apply(self, session, delivery_id: int, attempts: int, result: webhooks.AttemptResult) -> str:
        now = utcnow()
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return "gone"
        session.add(
            WebhookAttempt(
                delivery_id=delivery_id,
                at=now,
                status_code=result.status_code,
                latency_ms=result.latency_ms,
                response_excerpt=result.excerpt,
                error=result.error,
            )
        )
        delivery.last_status_code = result.status_code
        subscription = session.get(WebhookSubscription, delivery.subscription_id)
        if result.ok:
            delivery.status = "succeeded"
            delivery.next_attempt_at = None
            if subscription is not None:
                subscription.failing_since = None
            return "succeeded"
        if result.status_code == 410:
            delivery.status = "failed"
            delivery.next_attempt_at = None
            if subscription is not None and subscription.enabled:
                webhooks.disable(subscription, "The endpoint answered 410 Gone.")
            return "gone"
        if subscription is not None:
            subscription.failing_since = subscription.failing_since or now
            if (now - subscription.failing_since).total_seconds() > self.hooks.disable_after:
                webhooks.disable(
                    subscription,
                    f"Every delivery failed since {webhooks.iso(subscription.failing_since)}; "
                    "fix the endpoint, enable the subscription and replay what it missed.",
                )
        delay = webhooks.next_delay(attempts, self.hooks)
        if delay is None or subscription is None or not subscription.enabled:
            delivery.status = "failed"
            delivery.next_attempt_at = None
            return "failed"
        delivery.next_attempt_at = now + timedelta(seconds=delay)
        return "retry"

    # --- the sweep -------------------------------------------------------------------------------

    def sweep(self, batch: int = 500) -> int:
        """Sends the deliveries whose next attempt is due (a retry, or a task lost with its worker)."""
        now = utcnow()
        with self.db.transaction() as session:
            rows = session.scalars(
                select(WebhookDelivery)
                .where(WebhookDelivery.status == "pending", WebhookDelivery.next_attempt_at <= now)
                .order_by(WebhookDelivery.next_attempt_at)
                .limit(batch)
                .with_for_update(skip_locked=True)
            ).all()
            due: dict[str, list[tuple[int, int]]] = {}
            for row in rows:
                due.setdefault(row.event_id, []).append((row.id, row.attempts))
                row.next_attempt_at = now + webhooks.lease(self.hooks)
        for pairs in due.values():  # one task per event, as at intake
            self.enqueue_many(pairs)
        return len(rows)

    def prune(self) -> None:
        """The feed keeps ``feed_retention_days``; deliveries and their attempts as long."""
        cutoff = utcnow() - timedelta(days=self.hooks.feed_retention_days)
        with self.db.transaction() as session:
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < cutoff))
            session.execute(delete(FeedEvent).where(FeedEvent.received_at < cutoff))
            # a replayed id is refused by its timestamp after 5 minutes; its id is kept a day
            session.execute(delete(IncomingMessage).where(IncomingMessage.received_at < utcnow() - timedelta(days=1)))

    def check_drift(self) -> int:
        """Runs the drift checks that are due (asked for, or older than the interval); returns how many."""
        now = utcnow()
        stale = now - timedelta(seconds=self.drift_interval)
        with self.db.transaction() as session:
            due = [
                (row.id, row.name, row.accounts_url, row.monitoring_company_id)
                for row in session.scalars(select(Integration).where(Integration.accounts_url.is_not(None)))
                if row.accounts_url
                and row.drift_requested_at is not None
                or row.drift_checked_at is None
                or row.drift_checked_at < stale
            ]
        for integration_id, name, url, company_id in due:
            assert url is not None  # selected for having one
            report, error = None, None
            try:
                listed = webhooks.fetch_json(url, self.hooks)
                accounts = listed.get("items", []) if isinstance(listed, dict) else listed
                identity = service_identity("gateway", permissions={"integrations.manage"})
                report = self.reader.post(
                    "property",
                    "/api/v1/monitoring/drift",
                    identity,
                    {"central_station": name, "monitoring_company_id": company_id, "accounts": accounts},
                )
            except (RuntimeError, ValueError, urllib3.exceptions.HTTPError) as exc:
                error = str(exc)[:300]
            with self.db.transaction() as session:
                row = session.get(Integration, integration_id)
                if row is not None:
                    row.drift_checked_at = utcnow()
                    row.drift_requested_at = None
                    row.drift_error = error
                    if report is not None:
                        row.drift_report = report
            log.info("drift checked", extra={"integration_id": integration_id, "error": error})
        return len(due)

    def run_sweeper(self, stopping: threading.Event) -> None:
        last_prune = 0.0
        while not stopping.wait(self.hooks.sweep_interval):
            try:
                self.sweep()
                self.check_drift()
                last_prune += self.hooks.sweep_interval
                if last_prune > 3600:
                    self.prune()
                    last_prune = 0.0
            except Exception:  # the database or broker is down: try again next time
                log.exception("webhook sweep failed")

    # --- tasks -----------------------------------------------------------------------------------

    def register_tasks(self) -> None:
        runtime = self

        @self.celery.task(
            name=handle_event_task("gateway"),
            autoretry_for=(Exception,),
            retry_backoff=True,
            retry_backoff_max=300,
            max_retries=10,
        )
        def handle_event(message: dict[str, Any]) -> bool:
            return runtime.receive(message)

        @self.celery.task(name=DELIVER_TASK)
        def deliver_webhook(delivery_id: int, token: int) -> str:
            return runtime.deliver(delivery_id, token)

        @self.celery.task(name=DELIVER_MANY_TASK)
        def deliver_webhooks(pairs: list[list[int]]) -> list[str]:
            return runtime.deliver_many([(int(d), int(t)) for d, t in pairs])
