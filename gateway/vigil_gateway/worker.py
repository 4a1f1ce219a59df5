"""The gateway's worker: it receives every domain event (``gateway.handle_event.v1``), keeps it for the
change feed, and delivers it to the webhook subscriptions that want it.

Deliveries are rows. By default the delivery pool runs in a second process (``vigil-gateway deliver``,
started by the worker; :meth:`WebhookRuntime.run_delivery_process`) that takes the due rows, so the
intake and the deliveries use two cores; with ``VIGIL_WEBHOOK_DELIVERY_PROCESS=0`` the intake hands the
new ones to this process's delivery pool (dispatcher threads, ``VIGIL_WEBHOOK_DELIVERY_THREADS``), not
to the broker: the event intake and the deliveries
never wait on each other's threads, and the pool claims, sends and records many events' deliveries
at once. Each subscription has its own lane of sender threads, so a slow receiver holds only its
own. Retries are rows too: a failed attempt sets ``next_attempt_at`` and a sweep in this process
hands it to the pool when it is due (also a delivery held by a dead process, once its lease passes).
The ``gateway.deliver_webhook(s).v1`` tasks still work (a message sent by an earlier version).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import queue
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, cast

import urllib3
from sqlalchemy import (
    BigInteger,
    Integer,
    Table,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import IntegrityError

from vigil_shared.config import env_float
from vigil_shared.crypto import FieldCipher
from vigil_shared.db import Database, UTCDateTime, utcnow
from vigil_shared.identity import service_identity
from vigil_shared.messaging.contracts import handle_event_task, handle_events_task, parse_event

from . import webhooks
from .models import (
    AuthState,
    FeedEvent,
    IncomingMessage,
    Integration,
    RecordLocation,
    WebhookAttempt,
    WebhookBody,
    WebhookDelivery,
    WebhookSubscription,
)
from .settings import GatewaySettings

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("vigil.webhooks")

DELIVER_TASK = "gateway.deliver_webhook.v1"
DELIVER_MANY_TASK = "gateway.deliver_webhooks.v1"  # an event's deliveries, one task
FAST_SECONDS = 1.0  # a delivery answered by then is recorded with its event's others
IN_FLIGHT_LIMIT = 16  # attempts one subscription may have waiting for its receiver in this process
LANE_SENDERS = 4  # sender threads one subscription may hold at once
MAX_BATCH_EVENTS = 64  # events a dispatcher claims at once
# Events the intake keeps in one transaction: a burst's first deliveries are due once its first group
# is kept (a thousand events waiting were one transaction of about half a second, the delivery process
# idle meanwhile), and the others' statements and commit are still shared by a hundred.
MAX_INTAKE_GROUP = 100
PAYLOAD_CACHE_SECONDS = 10.0
# A delivery whose body could not be built (the record's service is down, or the event cannot be read)
# is tried again this much later, on its own: the deliveries claimed with it go out meanwhile.
UNBUILT_RETRY_SECONDS = 30.0
# While more events wait, a dispatcher claims at least this many at once (when the lanes have room):
# taking whatever room one answer made (an event or two) put a claim's statements, its owners' reads of
# the records and its commit on every event or two of a burst.
MIN_CLAIM_EVENTS = 8
DELIVERIES = cast(Table, WebhookDelivery.__table__)  # set-based statements over the deliveries


EPOCH = select(AuthState.epoch).where(AuthState.id == 1)

# The claim's and the recorder's statements on PostgreSQL: constant texts over arrays (compiled once,
# prepared by the server, one statement whatever the group's size), where SQLAlchemy would build and
# render an ``IN`` list, and psycopg send one statement per row of an ``executemany``, every time
# (SQLAlchemy's statement building was about 45% of the delivery process's CPU in py-spy). SQLite
# runs the same steps with Core statements.
_PG_ROWS = text(
    "SELECT id, subscription_id, event_id, status, attempts FROM webhook_deliveries "
    "WHERE id = ANY(CAST(:ids AS bigint[]))"
)
_PG_EVENTS = text(
    "SELECT event_id, type, occurred_at, request_id, data, location_id FROM feed_events "
    "WHERE event_id = ANY(CAST(:ids AS text[]))"
)
# Claims attempt token + 1 of each delivery still pending at attempt token, and stores in the same row
# version the id of its body (the one sent, kept once in ``webhook_bodies``: :func:`_keep_bodies`) or
# its end (``skipped``, ``cancelled``: no lease then).
_PG_CLAIM = text(
    "UPDATE webhook_deliveries AS d SET attempts = v.token + 1, status = v.status, "
    "body_id = COALESCE(v.body, d.body_id), updated_at = :now, "
    "next_attempt_at = CASE WHEN v.status = 'pending' THEN CAST(:due AS timestamptz) END "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:tokens AS int[]), CAST(:statuses AS text[]), "
    "CAST(:body_ids AS bigint[])) AS v(id, token, status, body) "
    "WHERE d.id = v.id AND d.attempts = v.token AND d.status = 'pending' RETURNING d.id"
)
# The bodies of a claim, each kept once (an event's deliveries to owners who read it alike, and its
# retries while the record is unchanged, find the row by its digest), then their ids. Each body is
# passed as standard base64 of its sealed bytes (an array of text, as the other statements' arrays).
_PG_KEEP_BODIES = text(
    "INSERT INTO webhook_bodies (digest, sealed, created_at) SELECT v.digest, decode(v.sealed, 'base64'), :now "
    "FROM unnest(CAST(:digests AS text[]), CAST(:sealed AS text[])) AS v(digest, sealed) "
    "ORDER BY v.digest ON CONFLICT (digest) DO NOTHING"
)
_PG_BODY_IDS = text("SELECT digest, id FROM webhook_bodies WHERE digest = ANY(CAST(:digests AS text[]))")
_CLAIM_ONE = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id == bindparam("d_id"),
        DELIVERIES.c.attempts == bindparam("token"),
        DELIVERIES.c.status == "pending",
    )
    .values(
        attempts=DELIVERIES.c.attempts + 1,
        status=bindparam("new_status"),
        body_id=func.coalesce(bindparam("body", type_=BigInteger()), DELIVERIES.c.body_id),
        next_attempt_at=bindparam("due", type_=UTCDateTime()),
    )
)
_PG_KNOWN = text("SELECT id, subscription_id FROM webhook_deliveries WHERE id = ANY(CAST(:ids AS bigint[]))")
_PG_ATTEMPTS = text(
    "INSERT INTO webhook_attempts (delivery_id, at, status_code, latency_ms, response_excerpt, error) "
    "SELECT v.id, :now, v.code, v.latency, v.excerpt, v.error FROM unnest(CAST(:ids AS bigint[]), "
    "CAST(:codes AS int[]), CAST(:latencies AS int[]), CAST(:excerpts AS text[]), CAST(:errors AS text[])) "
    "AS v(id, code, latency, excerpt, error)"
)
_PG_SUCCEEDED = text(
    "UPDATE webhook_deliveries AS d SET status = 'succeeded', next_attempt_at = NULL, "
    "last_status_code = v.code, updated_at = :now "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:codes AS int[])) AS v(id, code) WHERE d.id = v.id"
)
_PG_ANSWERED = text(
    "UPDATE webhook_subscriptions SET failing_since = NULL, updated_at = :now "
    "WHERE id = ANY(CAST(:ids AS int[])) AND failing_since IS NOT NULL"
)


# The intake's statements on PostgreSQL (see the claim's below): the group's events known already (the
# inbox), the group's feed rows in its order, and the delivery rows of one event type, made by the
# database from the feed rows just written and the wanted subscriptions.
_PG_KNOWN_EVENTS = text("SELECT event_id FROM feed_events WHERE event_id = ANY(CAST(:ids AS text[]))")
_PG_LOCATIONS = text(
    "SELECT customer_id, location_id FROM record_locations WHERE customer_id = ANY(CAST(:ids AS bigint[]))"
)
_PG_FEED = text(
    "INSERT INTO feed_events (event_id, type, version, occurred_at, received_at, source, request_id, data, "
    "location_id, customer_id) SELECT v.event_id, v.type, v.version, v.occurred_at, :now, v.source, "
    "v.request_id, CAST(v.data AS json), v.location_id, v.customer_id FROM unnest(CAST(:event_ids AS text[]), "
    "CAST(:types AS text[]), CAST(:versions AS int[]), CAST(:occurred AS timestamptz[]), "
    "CAST(:sources AS text[]), CAST(:request_ids AS text[]), CAST(:data AS text[]), CAST(:locations AS int[]), "
    "CAST(:customers AS bigint[])) WITH ORDINALITY "
    "AS v(event_id, type, version, occurred_at, source, request_id, data, location_id, customer_id, n) "
    "ORDER BY v.n RETURNING event_id, position"
)
_PG_FAN = text(
    "INSERT INTO webhook_deliveries (subscription_id, event_id, event_type, position, status, attempts, "
    "next_attempt_at, created_at, updated_at) SELECT s.id, f.event_id, f.type, f.position, 'pending', 0, "
    "CAST(:due AS timestamptz), CAST(:now AS timestamptz), CAST(:now AS timestamptz) "
    "FROM feed_events AS f CROSS JOIN unnest(CAST(:subscriptions AS int[])) AS s(id) "
    "WHERE f.position = ANY(CAST(:positions AS bigint[])) RETURNING id, event_id"
)
SUBSCRIBED = select(WebhookSubscription.id, WebhookSubscription.event_types).where(
    WebhookSubscription.enabled.is_(True)
)

# The due deliveries, taken and leased in one statement (built once: the delivery process runs it every
# poll); ``SKIP LOCKED``: another process takes the others. Those due at the same moment (every delivery
# of a group of events kept in one transaction) come in their events' order, each event's together: in
# any order, a take of 500 split the events into pieces of two or three deliveries, each piece counted
# as an event by the dispatchers, so a burst was claimed in 3-4 times as many claims.
SWEEP = (
    update(DELIVERIES)
    .where(
        DELIVERIES.c.id.in_(
            select(DELIVERIES.c.id)
            .where(
                DELIVERIES.c.status == "pending",
                DELIVERIES.c.next_attempt_at <= bindparam("now", type_=UTCDateTime()),
            )
            .order_by(DELIVERIES.c.next_attempt_at, DELIVERIES.c.position)  # an event's deliveries together
            .limit(bindparam("batch", type_=Integer()))
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(next_attempt_at=bindparam("due", type_=UTCDateTime()))
    .returning(DELIVERIES.c.id, DELIVERIES.c.event_id, DELIVERIES.c.attempts)
)


# The integrations whose drift check is due: asked for (with a list to read), never run, or stale.
DRIFT_DUE = select(Integration.id, Integration.name, Integration.accounts_url, Integration.monitoring_company_id).where(
    Integration.accounts_url.is_not(None),
    or_(
        and_(Integration.accounts_url != "", Integration.drift_requested_at.is_not(None)),
        Integration.drift_checked_at.is_(None),
        Integration.drift_checked_at < bindparam("stale", type_=UTCDateTime()),
    ),
)


def _pg_array(values: list[Any]) -> str:
    """A PostgreSQL array literal of ints, strings and None, passed as one text parameter and cast by
    the statement: psycopg dumps a list parameter element by element in Python (the claim's arrays
    were a fifth of the delivery process's CPU), where this is a join. Strings are always quoted, with
    their backslashes and double quotes escaped, so any text reads back as it was (a test checks)."""
    if all(type(v) is int for v in values):
        return "{" + ",".join(map(str, values)) + "}"
    return (
        "{"
        + ",".join(
            "NULL"
            if v is None
            else '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
            if isinstance(v, str)
            else str(int(v))
            for v in values
        )
        + "}"
    )


def _select_rows(pg: bool, ids: list[int]) -> tuple[Any, ...]:
    """The statement (and its parameters) reading the deliveries ``ids``' state."""
    if pg:
        return (_PG_ROWS, {"ids": _pg_array(ids)})
    table = DELIVERIES
    return (
        select(table.c.id, table.c.subscription_id, table.c.event_id, table.c.status, table.c.attempts).where(
            table.c.id.in_(ids)
        ),
    )


def _select_events(pg: bool, event_ids: set[str]) -> tuple[Any, ...]:
    """The feed rows of ``event_ids``, plain rows with the attributes a payload reads."""
    if pg:
        return (_PG_EVENTS, {"ids": _pg_array(sorted(event_ids))})
    feed = cast(Table, FeedEvent.__table__)
    return (
        select(
            feed.c.event_id, feed.c.type, feed.c.occurred_at, feed.c.request_id, feed.c.data, feed.c.location_id
        ).where(feed.c.event_id.in_(event_ids)),
    )


def _keep_bodies(session, pg: bool, sealed: dict[str, bytes], now) -> dict[str, int]:
    """Keeps each (digest: sealed body) not kept yet, in one statement (one per body on SQLite); returns
    every digest's row id. A body another claimer keeps at the same moment is found, not kept twice; in
    the digests' order, so two claimers keeping the same bodies wait for each other in one order (never
    a deadlock). A body the prune dropped between the two statements is missing (the delivery is sent
    anyway, naming none)."""
    if not sealed:
        return {}
    digests = sorted(sealed)
    if pg:
        session.execute(
            _PG_KEEP_BODIES,
            {
                "now": now,
                "digests": _pg_array(digests),
                "sealed": _pg_array([base64.b64encode(sealed[d]).decode() for d in digests]),
            },
        )
        return dict(session.execute(_PG_BODY_IDS, {"digests": _pg_array(digests)}).all())
    session.execute(
        sqlite_insert(WebhookBody).on_conflict_do_nothing(index_elements=["digest"]),
        [{"digest": digest, "sealed": sealed[digest], "created_at": now} for digest in digests],
    )
    return dict(
        session.execute(select(WebhookBody.digest, WebhookBody.id).where(WebhookBody.digest.in_(digests))).all()
    )


def _claim_rows(session, pg: bool, plan: list[tuple[int, int, str, int | None]], now, due) -> set[int]:
    """Claims each (delivery, token, status after, kept body's id) of ``plan`` whose row is still pending
    at attempt ``token``; returns the ids claimed. One statement on PostgreSQL, one per row on SQLite."""
    if not plan:
        return set()
    if pg:
        return set(
            session.scalars(
                _PG_CLAIM,
                {
                    "now": now,
                    "due": due,
                    "ids": _pg_array([p[0] for p in plan]),
                    "tokens": _pg_array([p[1] for p in plan]),
                    "statuses": _pg_array([p[2] for p in plan]),
                    "body_ids": _pg_array([p[3] for p in plan]),
                },
            )
        )
    claimed: set[int] = set()
    for delivery_id, token, status, body in plan:
        params = {
            "d_id": delivery_id,
            "token": token,
            "new_status": status,
            "body": body,
            "due": due if status == "pending" else None,
        }
        if session.execute(_CLAIM_ONE, params).rowcount == 1:
            claimed.add(delivery_id)
    return claimed


def _rights(identity) -> tuple[str, int]:
    """Who ``identity`` is and what it holds: bodies are cached under it."""
    return identity.subject, hash(identity.to_claims().__repr__())


@dataclass
class _Intake:
    """One event waiting to be kept, and what became of it (its deliveries; None for a repeat)."""

    event: Any
    data: dict[str, Any]
    location_id: int | None
    customer_id: int | None
    created: list[tuple[int, int]] | None = None
    done: bool = False
    error: Exception | None = None


@dataclass
class WebhookRuntime:
    settings: GatewaySettings
    hooks: webhooks.WebhookSettings
    db: Database
    celery: Celery | None  # None in the delivery process, which takes its work from the rows (no broker)
    cipher: FieldCipher
    reader: webhooks.ServiceReader
    drift_interval: float = 3600.0
    elsewhere: bool = False  # the deliveries are sent by the delivery process (``deliver``), not this one
    _cache: dict[tuple[str, str, int], tuple[float, str | None]] = field(default_factory=dict)
    _cache_lock: threading.Lock = field(default_factory=threading.Lock)
    _intake_lock: threading.Lock = field(default_factory=threading.Lock)
    _intake_waiting: list[_Intake] = field(default_factory=list)
    _intake_busy: bool = False
    _owners: dict[tuple[int | None, int | None], tuple[int | None, float, Any, Any]] = field(default_factory=dict)
    connections: webhooks.Connections = field(default_factory=webhooks.Connections)
    _in_flight: dict[int, int] = field(default_factory=dict)  # subscription: attempts being sent now
    _senders: ThreadPoolExecutor | None = None
    _senders_pid: int | None = None
    _lanes: dict[int, deque] = field(default_factory=dict)  # subscription: attempts waiting for a sender
    _lane_senders: dict[int, int] = field(default_factory=dict)  # subscription: sender threads on its lane
    _started: dict[int, dict[int, float]] = field(default_factory=dict)  # subscription: attempts being sent
    _work: queue.SimpleQueue | None = None  # the delivery pool's: one event's deliveries each
    _results: queue.SimpleQueue | None = None  # the recorder's: attempts answered
    _claiming: int = 0  # events the dispatchers have taken and not yet put on their lanes

    def __post_init__(self) -> None:
        self._room = threading.Condition(self._cache_lock)  # a lane moved on
        self._intake_done = threading.Condition(self._intake_lock)  # a group of events was kept

    @classmethod
    def build(
        cls, settings: GatewaySettings, hooks: webhooks.WebhookSettings | None = None, *, broker: bool = True
    ) -> WebhookRuntime:
        """``broker=False`` (the delivery process) builds no Celery app: Celery and kombu are not even
        imported (about 7 MB of the process's memory, issue 10)."""
        base = settings.base
        celery = None
        if broker:
            from vigil_shared.messaging.celery_app import make_celery  # noqa: PLC0415 - see above

            celery = make_celery(base)
        return cls(
            settings=settings,
            hooks=hooks or webhooks.WebhookSettings.from_env(),
            db=Database(base.database_url, pool_size=8),  # the intake, two dispatchers, the recorder, the sweep
            celery=celery,
            cipher=settings.webhook_cipher(),
            reader=webhooks.ServiceReader(
                settings.service_urls, base.internal_secret, base.identity_token_ttl, settings.upstream_timeout
            ),
            drift_interval=env_float("VIGIL_DRIFT_CHECK_INTERVAL", 3600.0),
        )

    # --- sending tasks ---------------------------------------------------------------------------

    def _broker(self) -> Celery:
        if self.celery is None:
            raise RuntimeError("this process was built without a broker (the delivery process)")
        return self.celery

    def enqueue(self, delivery_id: int, token: int) -> None:
        from vigil_shared.messaging.celery_app import send_to_queue  # noqa: PLC0415 - see build

        send_to_queue(self._broker(), DELIVER_TASK, self.settings.base.queue_name(), [delivery_id, token])

    def enqueue_many(self, pairs: list[tuple[int, int]]) -> None:
        """An event's deliveries to this process's delivery pool when it runs; else as one task (a single
        one as the one-delivery task)."""
        if self._work is not None:
            if pairs:
                self._work.put(pairs)
        elif self.elsewhere:  # made due now: the delivery process takes them from the rows
            return
        elif len(pairs) == 1:
            self.enqueue(*pairs[0])
        elif pairs:
            from vigil_shared.messaging.celery_app import send_to_queue  # noqa: PLC0415 - see build

            send_to_queue(
                self._broker(), DELIVER_MANY_TASK, self.settings.base.queue_name(), [[list(p) for p in pairs]]
            )

    # --- intake ----------------------------------------------------------------------------------

    def receive(self, message: dict[str, Any]) -> bool:
        """Keeps one event for the feed and creates its deliveries; False for a repeat (the inbox).

        The events that arrive while one group is written are written next as one group, in one short
        transaction, one at a time in this process: the feed's order is the order the broker delivered
        them, and a commit is shared by every event of a group. The deliveries are handed to the delivery
        pool after the commit."""
        return self.receive_many([message])[0]

    def receive_many(self, messages: list[dict[str, Any]]) -> list[bool]:
        """:meth:`receive` of a relay cycle's events (one task, ``handle_events``), in their order, kept
        with the events waiting then. Raises the first error once the others are kept: the task is
        retried whole and what was kept is a repeat then (at least once, the inbox)."""
        entries: list[_Intake] = []
        failed: Exception | None = None
        for message in messages:
            try:
                event = parse_event(message)
                data = event.data
                location_id = int(data["location_id"]) if data.get("location_id") is not None else None
            except Exception as exc:  # this one fails as its own task would; the others are kept
                failed = failed or exc
                continue
            entries.append(_Intake(event, data, location_id, data.get("customer_id") or data.get("to_customer_id")))
        if entries:
            self._intake(entries)
        kept = []
        for entry in entries:
            failed = failed or entry.error
            kept.append(entry.created is not None)
            if entry.created:
                self.enqueue_many(entry.created)
        if failed is not None:
            raise failed
        return kept

    def _intake(self, entries: list[_Intake]) -> None:
        """Waits until ``entries`` are kept (or failed) in a group with whatever else is waiting."""
        last = entries[-1]
        with self._intake_done:
            self._intake_waiting.extend(entries)
            while not last.done:
                if self._intake_busy:
                    self._intake_done.wait()
                    continue
                self._intake_busy = True
                group = self._intake_waiting[:MAX_INTAKE_GROUP]
                self._intake_waiting = self._intake_waiting[MAX_INTAKE_GROUP:]
                self._intake_done.release()
                try:
                    self._keep_group(group)
                except Exception as exc:  # each task of the group retries its own event
                    for waiting in group:
                        waiting.error = exc
                finally:
                    self._intake_done.acquire()
                    self._intake_busy = False
                    for waiting in group:
                        waiting.done = True
                    self._intake_done.notify_all()

    def _keep_group(self, group: list[_Intake]) -> None:
        """Keeps a group of events in one transaction; on a conflict (another process took one of them
        meanwhile) each on its own."""
        try:
            self._keep_many(group)
        except IntegrityError:
            for entry in group:
                self._keep_many([entry])

    def _keep_many(self, group: list[_Intake]) -> None:
        now = utcnow()
        with self.db.transaction() as session:
            pg = session.connection().dialect.name == "postgresql"
            ids = [e.event.id for e in group]
            if pg:
                known = set(session.scalars(_PG_KNOWN_EVENTS, {"ids": _pg_array(ids)}))
            else:
                known = set(session.scalars(select(FeedEvent.event_id).where(FeedEvent.event_id.in_(ids))))
            fresh: list[_Intake] = []
            for entry in group:
                if entry.event.id in known:  # a repeat (the inbox)
                    entry.created = None
                else:
                    known.add(entry.event.id)
                    fresh.append(entry)
            fresh = self._locate(session, fresh)
            if not fresh:
                return
            if pg:  # one constant statement, in order (the feed's positions follow the group's order)
                at: dict[str, int] = dict(
                    session.execute(
                        _PG_FEED,
                        {
                            "now": now,
                            "event_ids": [e.event.id for e in fresh],
                            "types": [e.event.type for e in fresh],
                            "versions": [e.event.version for e in fresh],
                            "occurred": [e.event.occurred_at for e in fresh],
                            "sources": [e.event.source for e in fresh],
                            "request_ids": [e.event.request_id for e in fresh],
                            "data": [json.dumps(e.data) for e in fresh],
                            "locations": [e.location_id for e in fresh],
                            "customers": [e.customer_id for e in fresh],
                        },
                    ).all()
                )
                positions = [at[e.event.id] for e in fresh]
            else:
                positions = list(
                    session.scalars(
                        insert(FeedEvent).returning(FeedEvent.position, sort_by_parameter_order=True),
                        [
                            {
                                "event_id": entry.event.id,
                                "type": entry.event.type,
                                "version": entry.event.version,
                                "occurred_at": entry.event.occurred_at,
                                "received_at": now,
                                "source": entry.event.source,
                                "request_id": entry.event.request_id,
                                "data": entry.data,
                                "location_id": entry.location_id,
                                "customer_id": entry.customer_id,
                            }
                            for entry in fresh
                        ],
                    )
                )  # one multi-row insert, in order
            for entry in fresh:
                data = entry.data
                if entry.event.type.startswith("customer.") and data.get("location_id") is not None:
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
            # The delivery rows are made by the database from the feed rows just written: one INSERT … SELECT
            # per event type, whose parameters are the events' positions and the subscriptions' ids (a
            # VALUES list of every row would cost the driver more than the database).
            subscriptions = session.execute(SUBSCRIBED).all()  # (id, event types) of the enabled ones
            due = now if self.elsewhere else now + webhooks.lease(self.hooks)  # held by this process's pool
            by_type: dict[str, list[int]] = {}
            for entry, position in zip(fresh, positions, strict=True):
                entry.created = []
                by_type.setdefault(entry.event.type, []).append(position)
            by_id = {entry.event.id: entry for entry in fresh}
            feed, table = cast(Table, FeedEvent.__table__), DELIVERIES
            for event_type, at_positions in by_type.items():
                wanted = [s.id for s in subscriptions if s.event_types is None or event_type in s.event_types]
                if not wanted or event_type not in webhooks.EVENT_TYPES:  # a type no subscription is sent
                    continue
                if pg:
                    made = session.execute(
                        _PG_FAN,
                        {
                            "due": due,
                            "now": now,
                            "subscriptions": _pg_array(wanted),
                            "positions": _pg_array(at_positions),
                        },
                    ).all()
                else:
                    made = session.execute(
                        insert(table)
                        .from_select(
                            ["subscription_id", "event_id", "event_type", "position", "status", "attempts"]
                            + ["next_attempt_at", "created_at", "updated_at"],
                            select(
                                WebhookSubscription.id,
                                feed.c.event_id,
                                feed.c.type,
                                feed.c.position,
                                literal("pending"),
                                literal(0),
                                literal(due, table.c.next_attempt_at.type),
                                literal(now, table.c.created_at.type),
                                literal(now, table.c.updated_at.type),
                            )
                            .select_from(feed.join(WebhookSubscription, true()))  # every wanted pair
                            .where(feed.c.position.in_(at_positions), WebhookSubscription.id.in_(wanted)),
                            include_defaults=False,
                        )
                        .returning(table.c.id, table.c.event_id)
                    ).all()
                for delivery_id, event_id in sorted(made):
                    created = by_id[event_id].created
                    assert created is not None
                    created.append((delivery_id, 0))

    def _locate(self, session, entries: list[_Intake]) -> list[_Intake]:
        """The location of each event's record that does not carry one: from the customers the gateway
        has heard of (one query), else from the customer service (a customer it has not heard of)."""
        missing = {entry.customer_id for entry in entries if entry.location_id is None and entry.customer_id}
        if not missing:
            return entries
        if session.connection().dialect.name == "postgresql":  # a constant text over one array, as the intake's
            found = session.execute(_PG_LOCATIONS, {"ids": _pg_array(list(missing))})
        else:
            found = session.execute(
                select(RecordLocation.customer_id, RecordLocation.location_id).where(
                    RecordLocation.customer_id.in_(missing)
                )
            )
        known = dict(found.all())
        failed: dict[int, Exception] = {}
        for customer_id in missing - set(known):
            try:
                record = self.reader.get(
                    "customer",
                    f"/api/v1/customers/{int(customer_id)}",
                    service_identity("gateway", permissions={"customers.view"}),
                )
            except Exception as exc:  # the customer service is down: this event's task retries, not the others'
                failed[customer_id] = exc
                continue
            if record is not None:
                known[customer_id] = record.get("location_id") if isinstance(record, dict) else None
                session.add(RecordLocation(customer_id=customer_id, location_id=known[customer_id]))
        located = []
        for entry in entries:
            if entry.location_id is None and entry.customer_id in failed:
                entry.error = failed[entry.customer_id]
                continue
            if entry.location_id is None and entry.customer_id:
                entry.location_id = known.get(entry.customer_id)
            located.append(entry)
        return located

    # --- delivery --------------------------------------------------------------------------------

    def deliver(self, delivery_id: int, token: int) -> str:
        """One attempt of one delivery, if it is still pending and ``token`` is its attempt count (a
        second copy of the same task finds the count moved on and does nothing)."""
        return self.deliver_many([(delivery_id, token)], fast=None)[0]

    def deliver_many(self, pairs: list[tuple[int, int]], fast: float | None = FAST_SECONDS) -> list[str]:
        """One attempt of each delivery (of one event or of many): claimed together in one transaction
        (a few statements, not a few per delivery), sent at once over kept-alive connections, each on
        its subscription's lane (:meth:`_send`), and recorded together. What has answered within
        ``fast`` seconds is recorded here; each later answer (or timeout) by the recorder with the others
        that came meanwhile (or on its own without one). A subscription already waiting on
        ``IN_FLIGHT_LIMIT`` attempts in this process gets this one a second later, from the sweep."""
        now = utcnow()
        with self.db.transaction() as session:
            outcomes, sends = self._claim_many(session, pairs, now)
        if fast == 0 and self._results is not None:  # the pool's path: each answer goes to the recorder
            for delivery_id, attempts, subscription_id, url, body, headers in sends:
                self._send(subscription_id, url, body, headers, (delivery_id, attempts))
                outcomes[delivery_id] = "sending"
            return [outcomes[delivery_id] for delivery_id, _ in pairs]
        futures: dict[Future, tuple[int, int]] = {}
        for delivery_id, attempts, subscription_id, url, body, headers in sends:
            future = self._send(subscription_id, url, body, headers)
            assert future is not None  # no record given
            futures[future] = (delivery_id, attempts)
        done, late = wait(futures, timeout=fast) if fast != 0 else (set(), set(futures))
        if done:
            outcomes |= self._record_many([(*futures[f], f.result()) for f in done])
        for future in late:
            delivery_id, attempts = futures[future]
            future.add_done_callback(partial(self._record_late, delivery_id, attempts))
            outcomes[delivery_id] = "sending"
        return [outcomes[delivery_id] for delivery_id, _ in pairs]

    def _claim_many(
        self, session, pairs: list[tuple[int, int]], now
    ) -> tuple[dict[int, str], list[tuple[int, int, int, str, str, dict[str, str]]]]:
        """Claims the deliveries still waiting for attempt ``token`` and builds each one's body and signed
        headers with its owner's rights of now. Returns what became of the others (``stale``,
        ``cancelled``, ``skipped``, ``deferred``) and the sends (delivery, attempt number, subscription,
        URL, body, headers).

        The bodies are built first for the deliveries that look claimable and each distinct one kept once
        (:func:`_keep_bodies`), then one statement claims them all and stores each one's body id and end
        (pending, ``skipped``, ``cancelled``) only where the
        attempt count is still ``token`` and the row pending (:func:`_claim_rows`): a second copy of a
        task, or another process, claims none of them twice, and one new row version per delivery, not
        three (claim, body, end), is what PostgreSQL writes."""
        pg = session.connection().dialect.name == "postgresql"
        ids = [d for d, _ in pairs]
        rows = {row.id: row for row in session.execute(*_select_rows(pg, ids))}
        subscriptions = {
            s.id: s
            for s in session.scalars(
                select(WebhookSubscription).where(
                    WebhookSubscription.id.in_({r.subscription_id for r in rows.values()})
                )
            )
        }
        epoch = session.scalar(EPOCH)
        outcomes: dict[int, str] = {}
        candidates: list[tuple[int, int]] = []  # (delivery, token): pending at attempt token, not deferred
        with self._cache_lock:
            waiting = dict(self._in_flight)
        seen: set[int] = set()
        for delivery_id, token in pairs:
            if delivery_id in seen:  # named twice: the first counts
                continue
            seen.add(delivery_id)
            row = rows.get(delivery_id)
            if row is None or row.status != "pending" or row.attempts != token:
                outcomes[delivery_id] = "stale"
                continue
            subscription = subscriptions.get(row.subscription_id)
            if subscription is None or not subscription.enabled:
                outcomes[delivery_id] = "cancelled"
            elif waiting.get(subscription.id, 0) >= IN_FLIGHT_LIMIT:
                outcomes[delivery_id] = "deferred"  # its receiver is slow: the sweep sends this one a moment later
            else:
                waiting[subscription.id] = waiting.get(subscription.id, 0) + 1
                candidates.append((delivery_id, token))
        # Every attempt, retries included, goes out with the owner's rights of now: a payload kept from
        # the first attempt would outlive a deactivation or a location taken away. The body is built once
        # per event and set of rights, and signed per subscription.
        wanted_events = {rows[d].event_id for d, _ in candidates}
        events = {e.event_id: e for e in session.execute(*_select_events(pg, wanted_events))} if candidates else {}
        digests: dict[str, str] = {}  # body: its digest, the key it is kept under (webhook_bodies)
        keep_bodies = self.hooks.body_retention_days > 0  # 0: no body is kept, the delivery log only
        sealed: dict[str, bytes] = {}  # digest: the body compressed and encrypted
        keys: dict[int, list[bytes]] = {}  # subscription: its signing keys, for this claim only
        owned = {
            subscription_id: self._owner(session, subscriptions[subscription_id], epoch)
            for subscription_id in {rows[d].subscription_id for d, _ in candidates}
        }
        owners = {subscription_id: identity for subscription_id, (identity, _) in owned.items()}
        rights = {subscription_id: held for subscription_id, (identity, held) in owned.items() if identity is not None}
        try:
            self._prefetch(events, wanted_events, owned.values())
        except Exception:  # only a shortcut: each body is built (or fails) on its own below
            log.warning("webhook records not read together", exc_info=True)
        plan: list[tuple[int, int, str, str | None]] = []  # (delivery, token, status after, body's digest)
        prepared: dict[int, tuple[int, int, str, str, dict[str, str]]] = {}
        for delivery_id, token in candidates:
            row = rows[delivery_id]
            subscription = subscriptions[row.subscription_id]
            identity = owners[subscription.id]
            if identity is None:
                if subscription.enabled:
                    webhooks.disable(
                        subscription, "The owner of this subscription can no longer sign in or manage webhooks."
                    )
                plan.append((delivery_id, token, "cancelled", None))
                continue
            try:
                body = self._payload(events.get(row.event_id), row.event_id, identity, rights=rights[subscription.id])
            except Exception:  # the record's service is down, or the event cannot be read: this one waits
                log.exception("webhook payload not built", extra={"delivery_id": delivery_id, "event_id": row.event_id})
                outcomes[delivery_id] = "unbuilt"
                continue
            if body is None:
                plan.append((delivery_id, token, "skipped", None))  # not the owner's to read
                continue
            if body not in digests and keep_bodies:
                digest = digests[body] = webhooks.body_digest(self.cipher, body)
                sealed[digest] = webhooks.seal_body(self.cipher, body)
            if subscription.id not in keys:  # decrypted once per claim, kept no longer
                keys[subscription.id] = webhooks.signing_keys(webhooks.signing_secrets(subscription, self.cipher, now))
            headers = webhooks.sign_with_keys(keys[subscription.id], row.event_id, now, body)
            prepared[delivery_id] = (token + 1, subscription.id, subscription.url, body, headers)
            plan.append((delivery_id, token, "pending", digests.get(body)))
        kept = _keep_bodies(session, pg, sealed, now)
        claimed = _claim_rows(
            session,
            pg,
            [(d, t, status, kept.get(digest) if digest is not None else None) for d, t, status, digest in plan],
            now,
            now + webhooks.lease(self.hooks),
        )
        sends: list[tuple[int, int, int, str, str, dict[str, str]]] = []
        for delivery_id, _, status, _ in plan:
            if delivery_id not in claimed:
                outcomes[delivery_id] = "stale"  # another claimer was first
            elif status != "pending":
                outcomes[delivery_id] = status
            else:
                sends.append((delivery_id, *prepared[delivery_id]))
        ended = [d for d, o in outcomes.items() if o == "cancelled" and d not in claimed]  # subscription off
        if ended:
            session.execute(
                update(DELIVERIES).where(DELIVERIES.c.id.in_(ended)).values(status="cancelled", next_attempt_at=None)
            )
        deferred = [d for d, o in outcomes.items() if o == "deferred"]
        if deferred:
            session.execute(
                update(DELIVERIES)
                .where(DELIVERIES.c.id.in_(deferred))
                .values(next_attempt_at=now + timedelta(seconds=1))
            )
        unbuilt = [d for d, o in outcomes.items() if o == "unbuilt"]
        for delivery_id in unbuilt:  # rare: one statement each, and only while still this attempt's
            session.execute(
                update(DELIVERIES)
                .where(
                    DELIVERIES.c.id == delivery_id,
                    DELIVERIES.c.status == "pending",
                    DELIVERIES.c.attempts == rows[delivery_id].attempts,
                )
                .values(next_attempt_at=now + timedelta(seconds=UNBUILT_RETRY_SECONDS))
            )
        return outcomes, sends

    def _send(
        self, subscription_id: int, url: str, body: str, headers: dict[str, str], record: tuple[int, int] | None = None
    ) -> Future | None:
        """Queues one attempt on its subscription's lane: at most ``LANE_SENDERS`` sender threads work a
        lane at once, so a slow receiver holds those and never the other subscriptions' threads. Its
        answer comes back as the future, or with ``record`` (delivery, attempt number) it goes straight to
        the recorder (the delivery pool: a future and its callback per delivery were about a tenth of the
        delivery process's CPU in a burst)."""
        future: Future | None = Future() if record is None else None
        with self._cache_lock:
            self._in_flight[subscription_id] = self._in_flight.get(subscription_id, 0) + 1
            self._lanes.setdefault(subscription_id, deque()).append((url, body, headers, future, record))
            start = self._lane_senders.get(subscription_id, 0) < LANE_SENDERS
            if start:
                self._lane_senders[subscription_id] = self._lane_senders.get(subscription_id, 0) + 1
            if self._senders is None or self._senders_pid != os.getpid():
                self._senders = ThreadPoolExecutor(max(4, self.hooks.concurrency * 4), thread_name_prefix="webhook")
                self._senders_pid = os.getpid()
            senders = self._senders
        if start:
            senders.submit(self._run_lane, subscription_id)
        return future

    def _run_lane(self, subscription_id: int) -> None:
        while True:
            with self._cache_lock:
                lane = self._lanes.get(subscription_id)
                if not lane:
                    self._lane_senders[subscription_id] -= 1
                    return
                item = lane.popleft()
                url, body, headers, future, record = item
                self._started.setdefault(subscription_id, {})[id(item)] = time.monotonic()
            try:
                result = webhooks.post(url, body, headers, self.hooks, self.connections)
            except Exception as exc:  # never lose the attempt: it is recorded as failed and retried
                log.exception("webhook attempt failed", extra={"subscription_id": subscription_id})
                result = webhooks.AttemptResult(None, 0, None, type(exc).__name__)
            finally:
                with self._cache_lock:
                    self._in_flight[subscription_id] -= 1
                    self._started[subscription_id].pop(id(item), None)
                    self._room.notify_all()
            if future is not None:
                future.set_result(result)
            elif self._results is not None and record is not None:
                self._results.put((*record, result))

    def _slow(self, subscription_id: int, now: float) -> bool:
        """Whether a receiver has had an attempt open longer than ``FAST_SECONDS`` (call with the lock held)."""
        return any(now - started > FAST_SECONDS for started in self._started.get(subscription_id, {}).values())

    def _record_late(self, delivery_id: int, attempts: int, future: Future) -> None:
        if self._results is not None:  # the recorder writes it with the others that answered meanwhile
            self._results.put((delivery_id, attempts, future.result()))
            return
        try:
            self._record_many([(delivery_id, attempts, future.result())])
        except Exception:  # the database is down: the lease passes and the sweep sends it again
            log.exception("webhook attempt not recorded", extra={"delivery_id": delivery_id})

    # --- the delivery pool: intake and sweep hand deliveries to it, not to the broker ----------------

    def start_delivery(self, threads: int) -> None:
        """Dispatcher threads that claim and send what :meth:`enqueue_many` hands them (as many events at
        once as the receivers have room for), and a recorder that writes the attempts in groups. The rows
        are the queue: what a dead process held is sent again by a sweep once its lease passes."""
        self._work = queue.SimpleQueue()
        self._results = queue.SimpleQueue()
        for n in range(max(1, threads)):
            threading.Thread(target=self._run_dispatcher, name=f"webhook-dispatch-{n}", daemon=True).start()
        threading.Thread(target=self._run_recorder, name="webhook-record", daemon=True).start()

    def stop_delivery(self, threads: int) -> None:
        """Ends the pool's threads once they have handed out what they hold (tests; a worker just exits)."""
        if self._work is not None and self._results is not None:
            for _ in range(max(1, threads)):
                self._work.put(None)
            self._results.put(None)

    def run_delivery_process(self, stopping: threading.Event, threads: int, poll: float) -> None:
        """The delivery process (``vigil-gateway deliver``, beside the worker): its pool takes what is due
        from the rows, as the sweep does (``SKIP LOCKED`` and a lease, so two processes never take the
        same rows, and an attempt is claimed once anyway), every ``poll`` seconds while there is none and
        at once while there is more and the pool has room for it."""
        self.start_delivery(threads)
        assert self._work is not None
        while not stopping.is_set():
            taken = 0
            if self._work.qsize() < 2 * MAX_BATCH_EVENTS:
                try:
                    taken = self.sweep()
                except Exception:  # the database is down: try again
                    log.exception("webhook deliveries not taken")
            if not taken:
                stopping.wait(poll)
        self.stop_delivery(threads)

    def _run_dispatcher(self) -> None:
        assert self._work is not None
        while True:
            taken = self._take_work(self._work)
            if taken is None:
                return
            batch, events = taken
            try:
                self.deliver_many(batch, fast=0)
            except Exception:  # the database is down: the lease passes and the sweep sends them again
                log.exception("webhook deliveries not sent", extra={"deliveries": len(batch)})
            finally:
                with self._room:
                    self._claiming -= events  # now on their lanes (or deferred, or done)
                    self._room.notify_all()

    def _take_work(self, work: queue.SimpleQueue) -> tuple[list[tuple[int, int]], int] | None:
        """The next events' deliveries (and how many events): as many events as the busiest receiver that
        keeps pace has room for, counting those another dispatcher is claiming (a slow receiver's are
        deferred anyway), so no lane holds more than its lease allows; and while more wait, not before
        there is room for ``MIN_CLAIM_EVENTS`` of them."""
        first = work.get()
        if first is None:
            return None
        batch: list[tuple[int, int]] = list(first)
        with self._room:
            while True:
                now = time.monotonic()
                busiest = max(
                    (n for sub, n in self._in_flight.items() if n and not self._slow(sub, now)),
                    default=0,
                )
                room = IN_FLIGHT_LIMIT - busiest - self._claiming
                if room >= min(MIN_CLAIM_EVENTS, 1 + work.qsize()):
                    break
                self._room.wait(0.2)
            events = 1
            while events < min(room, MAX_BATCH_EVENTS):
                try:
                    more = work.get_nowait()
                except queue.Empty:
                    break
                if more is None:  # stopping: the next take sees it
                    work.put(None)
                    break
                batch.extend(more)
                events += 1
            self._claiming += events
        return batch, events

    def _run_recorder(self) -> None:
        assert self._results is not None
        stopping = False
        while not stopping:
            results = [self._results.get()]
            while len(results) < 2000:
                try:
                    results.append(self._results.get_nowait())
                except queue.Empty:
                    break
            stopping = None in results
            results = [r for r in results if r is not None]
            if not results:
                continue
            try:
                self._record_many(results)
            except Exception:  # the database is down: the lease passes and the sweep sends them again
                log.exception("webhook attempts not recorded", extra={"attempts": len(results)})

    def _owner(self, session, subscription: WebhookSubscription, epoch: int | None):
        """The owner's identity and what it holds (:func:`_rights`), resolved again whenever anyone's
        access changed (the auth epoch moved, as the gateway's own identity cache does) and at least every
        few seconds (a key's expiry)."""
        key = (subscription.owner_user_id, subscription.owner_key_id)
        now = time.monotonic()
        with self._cache_lock:
            cached = self._owners.get(key)
        if cached is not None and cached[0] == epoch and now - cached[1] < PAYLOAD_CACHE_SECONDS:
            return cached[2], cached[3]
        identity = webhooks.owner_identity(session, subscription)
        rights = _rights(identity) if identity is not None else None  # once per resolution, not per claim
        with self._cache_lock:
            self._owners[key] = (epoch, now, identity, rights)
        return identity, rights

    def _prefetch(self, events: dict[str, Any], wanted: set[str], identities) -> None:
        """Builds the bodies of the property events among ``wanted`` that each owner's rights have none
        cached for, from the records read in one call per set of rights (not one per event): a record
        the list does not show that owner is read on its own, as before."""
        now = time.monotonic()
        todo: dict[tuple[str, int], tuple[Any, list[FeedEvent]]] = {}
        for identity, rights in identities:  # (identity, its rights) of each owner
            if identity is None:
                continue
            if rights in todo:
                continue
            with self._cache_lock:
                missing = [
                    event
                    for event_id in wanted
                    if (event := events.get(event_id)) is not None
                    and event.type.startswith("property.")
                    and not event.type.endswith(".deleted")
                    and event.data.get("property_id") is not None
                    and not (
                        (cached := self._cache.get((event_id, *rights))) is not None
                        and now - cached[0] < PAYLOAD_CACHE_SECONDS
                    )
                ]
            if len(missing) > 1:
                todo[rights] = (identity, missing)
        for rights, (identity, missing) in todo.items():
            records = webhooks.read_properties(
                self.reader, webhooks.without_confidential(identity), (int(e.data["property_id"]) for e in missing)
            )
            reader = webhooks.Prefetched(self.reader, records)
            for event in missing:
                self._payload(event, event.event_id, identity, reader, rights)

    def _payload(self, event, event_id: str, identity, reader=None, rights=None) -> str | None:
        """The body for one event as ``identity`` reads it; built once per event and set of rights for a
        few seconds, so ten subscriptions of one owner cost one read of the record, not ten."""
        key = (event_id, *(rights or _rights(identity)))
        now = time.monotonic()
        with self._cache_lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < PAYLOAD_CACHE_SECONDS:
                return cached[1]
        payload = webhooks.build_payload(event, identity, reader or self.reader) if event is not None else None
        body = json.dumps(payload, separators=(",", ":"), default=str) if payload is not None else None
        with self._cache_lock:
            if len(self._cache) > 5000:
                self._cache = {k: v for k, v in self._cache.items() if now - v[0] < PAYLOAD_CACHE_SECONDS}
            self._cache[key] = (now, body)
        return body

    def _record(self, delivery_id: int, attempts: int, result: webhooks.AttemptResult) -> str:
        return self._record_many([(delivery_id, attempts, result)])[delivery_id]

    def _record_many(self, results: list[tuple[int, int, webhooks.AttemptResult]]) -> dict[int, str]:
        """Records attempts in one transaction: the attempt rows in one insert, the successes in one
        update per status code, failures one by one (a retry's delay, a 410, days of failure disable);
        what became of each delivery."""
        now = utcnow()
        table = DELIVERIES
        outcomes: dict[int, str] = {}
        with self.db.transaction() as session:
            pg = session.connection().dialect.name == "postgresql"
            ids = sorted({r[0] for r in results})
            if pg:
                known = dict(session.execute(_PG_KNOWN, {"ids": _pg_array(ids)}).all())
            else:
                known = dict(
                    session.execute(select(table.c.id, table.c.subscription_id).where(table.c.id.in_(ids))).all()
                )
            outcomes = {delivery_id: "gone" for delivery_id, _, _ in results if delivery_id not in known}
            kept = [r for r in results if r[0] in known]
            if kept and pg:  # every attempt logged: one statement for the group
                session.execute(
                    _PG_ATTEMPTS,
                    {
                        "now": now,
                        "ids": _pg_array([delivery_id for delivery_id, _, _ in kept]),
                        "codes": _pg_array([result.status_code for _, _, result in kept]),
                        "latencies": _pg_array([result.latency_ms for _, _, result in kept]),
                        "excerpts": [result.excerpt for _, _, result in kept],
                        "errors": [result.error for _, _, result in kept],
                    },
                )
            elif kept:
                session.execute(
                    insert(WebhookAttempt),
                    [
                        {
                            "delivery_id": delivery_id,
                            "at": now,
                            "status_code": result.status_code,
                            "latency_ms": result.latency_ms,
                            "response_excerpt": result.excerpt,
                            "error": result.error,
                        }
                        for delivery_id, _, result in kept
                    ],
                )
            succeeded: dict[int, int | None] = {}  # delivery: its status code
            for delivery_id, _, result in kept:
                if result.ok:
                    succeeded[delivery_id] = result.status_code
                    outcomes[delivery_id] = "succeeded"
            answered = sorted({known[d] for d in succeeded})
            if succeeded and pg:
                session.execute(
                    _PG_SUCCEEDED,
                    {"now": now, "ids": _pg_array(list(succeeded)), "codes": _pg_array(list(succeeded.values()))},
                )
                session.execute(_PG_ANSWERED, {"now": now, "ids": _pg_array(answered)})
            elif succeeded:
                by_code: dict[int | None, list[int]] = {}
                for delivery_id, status_code in succeeded.items():
                    by_code.setdefault(status_code, []).append(delivery_id)
                for status_code, same in by_code.items():
                    session.execute(
                        update(table)
                        .where(table.c.id.in_(same))
                        .values(status="succeeded", next_attempt_at=None, last_status_code=status_code)
                    )
                session.execute(
                    update(WebhookSubscription)
                    .where(WebhookSubscription.id.in_(answered), WebhookSubscription.failing_since.is_not(None))
                    .values(failing_since=None)
                    .execution_options(synchronize_session=False)
                )
            for delivery_id, attempts, result in kept:
                if delivery_id not in outcomes:
                    outcomes[delivery_id] = self._apply_failure(session, delivery_id, attempts, result, now)
        return outcomes

    def _apply_failure(self, session, delivery_id: int, attempts: int, result: webhooks.AttemptResult, now) -> str:
        delivery = session.get(WebhookDelivery, delivery_id)
        if delivery is None:
            return "gone"
        delivery.last_status_code = result.status_code
        subscription = session.get(WebhookSubscription, delivery.subscription_id)
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
        with self.db.engine.begin() as conn:  # one statement: they are leased as they are taken
            rows = conn.execute(SWEEP, {"now": now, "due": now + webhooks.lease(self.hooks), "batch": batch}).all()
        due: dict[str, list[tuple[int, int]]] = {}
        for delivery_id, event_id, attempts in sorted(map(tuple, rows)):  # plain tuples: Row's compare is slow
            due.setdefault(event_id, []).append((delivery_id, attempts))
        for pairs in due.values():  # one task per event, as at intake
            self.enqueue_many(pairs)
        return len(rows)

    def prune(self) -> None:
        """The feed keeps ``feed_retention_days``; deliveries and their attempts (the delivery log) as
        long; the bodies sent ``body_retention_days``. On SQLite the pages freed go back to the file
        system (:meth:`give_back_free_pages`)."""
        now = utcnow()
        cutoff = now - timedelta(days=self.hooks.feed_retention_days)
        with self.db.transaction() as session:
            session.execute(delete(WebhookDelivery).where(WebhookDelivery.created_at < cutoff))
            session.execute(delete(FeedEvent).where(FeedEvent.received_at < cutoff))
            bodies_cutoff = now - timedelta(days=self.hooks.body_retention_days)
            session.execute(delete(WebhookBody).where(WebhookBody.created_at < bodies_cutoff))
            # a replayed id is refused by its timestamp after 5 minutes; its id is kept a day
            session.execute(delete(IncomingMessage).where(IncomingMessage.received_at < now - timedelta(days=1)))
        self.give_back_free_pages()

    def give_back_free_pages(self, step: int = 2000) -> int:
        """SQLite (``auto_vacuum = INCREMENTAL``, migration 0014): hands the file's free pages back to the
        file system, ``step`` pages (8 MB) a transaction so the other writers wait at most one step's
        time; returns how many. SQLite reuses free pages for new rows anyway, but never shrinks the file
        without this. PostgreSQL's autovacuum makes dead rows' room reusable in place (no-op here)."""
        given = 0
        with self.db.engine.connect() as conn:
            if conn.dialect.name != "sqlite" or conn.exec_driver_sql("PRAGMA auto_vacuum").scalar() != 2:
                return 0
        while True:
            with self.db.engine.connect() as conn:
                free = conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
                if not free:
                    break
                conn.exec_driver_sql(f"PRAGMA incremental_vacuum({int(step)})")
                left = conn.exec_driver_sql("PRAGMA freelist_count").scalar() or 0
            if left >= free:  # nothing moved (another connection holds the file): the next prune goes on
                break
            given += free - left
        with self.db.engine.connect() as conn:  # the file shrinks once the WAL is copied into it
            conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)")
        return given

    def check_drift(self) -> int:
        """Runs the drift checks that are due (asked for, or older than the interval); returns how many."""
        now = utcnow()
        stale = now - timedelta(seconds=self.drift_interval)
        with self.db.engine.connect() as conn:  # the sweep asks every interval: one plain statement
            due = [
                (row.id, row.name, row.accounts_url, row.monitoring_company_id)
                for row in conn.execute(DRIFT_DUE, {"stale": stale})
            ]
        for integration_id, name, url, company_id in due:
            assert url is not None  # selected for having one
            report, error = None, None
            try:
                accounts = webhooks.station_accounts(webhooks.fetch_json(url, self.hooks))
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
                if not self.elsewhere:
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
        runtime, celery = self, self._broker()

        # an event's intake is retried with backoff until it is kept (the feed and deliveries need it)
        retried: dict[str, Any] = {
            "autoretry_for": (Exception,),
            "retry_backoff": True,
            "retry_backoff_max": 300,
            "max_retries": 10,
        }

        @celery.task(name=handle_event_task("gateway"), **retried)
        def handle_event(message: dict[str, Any]) -> bool:
            return runtime.receive(message)

        @celery.task(name=handle_events_task("gateway"), **retried)
        def handle_events(messages: list[dict[str, Any]]) -> list[bool]:
            return runtime.receive_many(messages)

        @celery.task(name=DELIVER_TASK)
        def deliver_webhook(delivery_id: int, token: int) -> str:
            return runtime.deliver(delivery_id, token)

        @celery.task(name=DELIVER_MANY_TASK)
        def deliver_webhooks(pairs: list[list[int]]) -> list[str]:
            return runtime.deliver_many([(int(d), int(t)) for d, t in pairs])
