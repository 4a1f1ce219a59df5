"""Transactional outbox and inbox tables, the relay that publishes the outbox, and the consumer.

A service writes its events with :func:`record_event` in the same transaction as the change, so an
event exists if and only if the change was committed. The relay (its own process) publishes
unpublished rows to every subscriber's queue and marks them published; a crash between the two
publishes again, which consumers absorb because :class:`EventConsumer` records every processed
event id in the same transaction as its effect. An event a consumer can never apply goes to its
dead letters (see ``dead_letters``) instead of being retried.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from sqlalchemy import JSON, BigInteger, Integer, String, Table, Text, delete, insert, select
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ..crypto import FieldCipher
from ..db import Database, UTCDateTime, utcnow
from .contracts import (
    BATCHED_SUBSCRIBERS,
    Event,
    UnknownContract,
    contract_of,
    handle_event_task,
    handle_events_task,
    message,
    new_event,
    parse_event,
    subscribers,
)
from .dead_letters import DeadLetters, worth_retrying

if TYPE_CHECKING:
    from celery import Celery

log = logging.getLogger("vigil.messaging")

OUTBOX_RETENTION = timedelta(days=7)
# How long a consumer remembers an event it processed (``processed_events``, the inbox): far beyond any
# redelivery, the broker's (minutes) or an operator's from the outbox (which keeps events OUTBOX_RETENTION).
INBOX_RETENTION = timedelta(days=30)
PRUNE_BATCH = 5000  # inbox rows removed per transaction, so the prune never holds SQLite's write lock long
RETRIES = 10  # of a transient failure, with backoff up to 5 minutes apart; then the event is a dead letter

P = TypeVar("P")


@dataclass(frozen=True)
class MessagingModels:
    """A service's own copies of the tables below (their columns are those of ``messaging_models``)."""

    OutboxEvent: type[Any]
    ProcessedEvent: type[Any]
    IdempotencyRecord: type[Any]
    DeadLetter: type[Any]


class IdempotencyColumns:
    """The columns of an ``idempotency_keys`` table: every service's (below) and the gateway's own.

    The first answer to a POST sent with an ``Idempotency-Key``, sealed (``vigil_shared.idempotency``).
    """

    caller: Mapped[str] = mapped_column(String(100), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    request_hash: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(20))
    response_status: Mapped[int | None] = mapped_column(Integer)
    response_body: Mapped[str | None] = mapped_column(Text)
    response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)


def messaging_models(Base: type[DeclarativeBase]) -> MessagingModels:
    """Declares ``outbox_events``, ``processed_events``, ``idempotency_keys`` and ``dead_letters`` on a
    service's own metadata.

    The classes derive from the base passed in, which mypy cannot take as a static base class.
    """

    class OutboxEvent(Base):  # type: ignore[valid-type,misc]
        __tablename__ = "outbox_events"

        position: Mapped[int] = mapped_column(
            BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True
        )
        event_id: Mapped[str] = mapped_column(String(36), unique=True)
        type: Mapped[str] = mapped_column(String(100))
        version: Mapped[int] = mapped_column(Integer)
        occurred_at: Mapped[datetime] = mapped_column(UTCDateTime())
        data: Mapped[dict[str, Any]] = mapped_column(JSON)
        request_id: Mapped[str | None] = mapped_column(String(64))
        published_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)

    class ProcessedEvent(Base):  # type: ignore[valid-type,misc]
        __tablename__ = "processed_events"

        event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
        type: Mapped[str] = mapped_column(String(100))
        processed_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
        duplicates: Mapped[int] = mapped_column(Integer, default=0)  # repeats absorbed, for operators

    class IdempotencyRecord(IdempotencyColumns, Base):  # type: ignore[valid-type,misc]
        """The first response to a POST sent with an ``Idempotency-Key`` (see ``vigil_shared.idempotency``)."""

        __tablename__ = "idempotency_keys"

    class DeadLetter(Base):  # type: ignore[valid-type,misc]
        """An event this service's consumer can never apply as it is (see ``messaging.dead_letters``)."""

        __tablename__ = "dead_letters"

        event_id: Mapped[str] = mapped_column(String(36), primary_key=True)
        type: Mapped[str] = mapped_column(String(100))
        version: Mapped[int | None] = mapped_column(Integer)
        source: Mapped[str | None] = mapped_column(String(100))
        request_id: Mapped[str | None] = mapped_column(String(64))
        error_class: Mapped[str] = mapped_column(String(200))
        error_message: Mapped[str] = mapped_column(String(500))
        attempts: Mapped[int] = mapped_column(Integer)
        first_failed_at: Mapped[datetime] = mapped_column(UTCDateTime())
        last_failed_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
        retried_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
        message: Mapped[str | None] = mapped_column(Text)  # the whole message, encrypted (FieldCipher)

    return MessagingModels(OutboxEvent, ProcessedEvent, IdempotencyRecord, DeadLetter)


def record_event(
    session: Session, models: MessagingModels, payload: Any, *, source: str, request_id: str | None = None
) -> Event[Any]:
    """Adds a validated event carrying ``payload`` (a contract class) to the outbox inside the caller's transaction."""
    event = new_event(payload, source=source, request_id=request_id)
    session.add(
        models.OutboxEvent(
            event_id=event.id,
            type=event.type,
            version=event.version,
            occurred_at=event.occurred_at,
            data=event.data,
            request_id=request_id,
        )
    )
    return event


class OutboxRelay:
    """Publishes a service's outbox, oldest first, to every subscriber's queue."""

    def __init__(
        self,
        *,
        service: str,
        db: Database,
        models: MessagingModels,
        celery: Celery,
        queue_name: Callable[[str], str],
        interval: float = 0.2,
        batch_size: int = 100,
    ):
        self.service = service
        self.db = db
        self.models = models
        self.celery = celery
        self.queue_name = queue_name
        self.interval = interval
        self.batch_size = batch_size
        self.stopping = threading.Event()
        self.last_cycle_ok: float | None = None
        self._last_prune = 0.0

    def publish_pending(self) -> int:
        """One cycle: publish up to ``batch_size`` events; returns how many."""
        # Celery and kombu are imported where they are used (a relay, a worker): a process that only reads
        # the outbox's models (the gateway's webhook delivery process) never loads them (issue 10)
        from .celery_app import send_to_queue  # noqa: PLC0415

        OutboxEvent = self.models.OutboxEvent
        with self.db.transaction() as session:
            rows = session.scalars(
                select(OutboxEvent)
                .where(OutboxEvent.published_at.is_(None))
                .order_by(OutboxEvent.position)
                .limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            batched: dict[str, list[dict[str, Any]]] = {}  # subscriber: this cycle's messages, in order
            for row in rows:
                sent = message(
                    row.event_id,
                    row.type,
                    row.version,
                    row.occurred_at,
                    row.data,
                    source=self.service,
                    request_id=row.request_id,
                )
                for subscriber in subscribers(row.type):
                    if subscriber in BATCHED_SUBSCRIBERS:
                        batched.setdefault(subscriber, []).append(sent)
                        continue
                    send_to_queue(
                        self.celery,
                        handle_event_task(subscriber),
                        self.queue_name(subscriber),
                        [sent],
                        headers={"request_id": row.request_id},
                    )
                row.published_at = utcnow()
                log.info(
                    "event published",
                    extra={"event_id": row.event_id, "event_type": row.type, "request_id": row.request_id},
                )
            for subscriber, sent_many in batched.items():  # published before the rows are marked, as above
                send_to_queue(self.celery, handle_events_task(subscriber), self.queue_name(subscriber), [sent_many])
        self.last_cycle_ok = time.monotonic()
        return len(rows)

    def prune(self) -> None:
        """Hourly: the outbox's events published ``OUTBOX_RETENTION`` ago, expired idempotent replies, and
        the inbox's entries older than ``INBOX_RETENTION`` (the consumer shares this database)."""
        OutboxEvent = self.models.OutboxEvent
        IdempotencyRecord = self.models.IdempotencyRecord
        ProcessedEvent = self.models.ProcessedEvent
        with self.db.transaction() as session:
            session.execute(delete(OutboxEvent).where(OutboxEvent.published_at < utcnow() - OUTBOX_RETENTION))
            session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < utcnow()))
        cutoff = utcnow() - INBOX_RETENTION
        while True:
            with self.db.transaction() as session:
                old = select(ProcessedEvent.event_id).where(ProcessedEvent.processed_at < cutoff).limit(PRUNE_BATCH)
                result = session.execute(delete(ProcessedEvent).where(ProcessedEvent.event_id.in_(old)))
                removed = cast(CursorResult[Any], result).rowcount
            if removed < PRUNE_BATCH:
                return

    def run_forever(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: self.stopping.set())
        log.info("outbox relay started", extra={"service": self.service})
        while not self.stopping.is_set():
            try:
                published = self.publish_pending()
                if time.monotonic() - self._last_prune > 3600:
                    self.prune()
                    self._last_prune = time.monotonic()
            except Exception:  # the broker or database is down: keep the rows, try again shortly
                log.exception("outbox relay cycle failed")
                published = 0
                self.stopping.wait(min(5.0, self.interval * 10))
            if published < self.batch_size:
                self.stopping.wait(self.interval)
        log.info("outbox relay stopped", extra={"service": self.service})


class Handler(Generic[P]):
    """What ``EventConsumer.on`` registers: a function of the session and an event whose payload is a ``P``."""

    def __init__(self, payload_type: type[P], apply: Callable[[Session, Event[P]], None]):
        self.payload_type = payload_type
        self.apply = apply


class EventConsumer:
    """Dispatches incoming events to handlers, exactly once per event id (the inbox).

    Only a transient failure is retried (see ``dead_letters.worth_retrying``); any other failure, or
    the last transient one, puts the event in the service's dead letters and acknowledges it.
    """

    def __init__(
        self, *, service: str, db: Database, models: MessagingModels, cipher: FieldCipher, retries: int = RETRIES
    ):
        self.service = service
        self.db = db
        self.models = models
        self.retries = retries
        self.dead_letters = DeadLetters(models.DeadLetter, cipher)
        self.handlers: dict[str, Handler[Any]] = {}

    def on(
        self, payload_type: type[P]
    ) -> Callable[[Callable[[Session, Event[P]], None]], Callable[[Session, Event[P]], None]]:
        """Registers the handler of one contract: ``@consumer.on(CustomerDeleted)``."""
        event_type = contract_of(payload_type).type

        def register(apply: Callable[[Session, Event[P]], None]) -> Callable[[Session, Event[P]], None]:
            self.handlers[event_type] = Handler(payload_type, apply)
            return apply

        return register

    def consume(self, message: dict[str, Any], attempt: int = 1) -> bool:
        """Applies one event; returns False when it was already processed, has no handler or is now a
        dead letter. Raises only a transient error, and only while ``attempt`` leaves a retry."""
        try:
            return self._apply(message)
        except Exception as error:
            if worth_retrying(error, attempt) and attempt <= self.retries:
                raise  # the task tries again, with backoff
            self._dead_letter(message, error, attempt)
            return False

    def _apply(self, message: dict[str, Any]) -> bool:
        event = parse_event(message)
        handler = self.handlers.get(event.type)
        if handler is None:
            log.warning("no handler for event", extra={"event_type": event.type, "event_id": event.id})
            return False
        if not isinstance(event.payload, handler.payload_type):
            raise UnknownContract(f"the {self.service} service handles {event.type} but not v{event.version}")
        ProcessedEvent = self.models.ProcessedEvent
        with self.db.transaction() as session:
            seen = session.get(ProcessedEvent, event.id)
            if seen is not None:
                seen.duplicates += 1
                log.info("duplicate event ignored", extra={"event_id": event.id, "event_type": event.type})
                return False
            session.add(ProcessedEvent(event_id=event.id, type=event.type, processed_at=utcnow(), duplicates=0))
            try:
                session.flush()  # a concurrent delivery of the same id fails here, before any effect
            except IntegrityError:
                session.rollback()
                log.info("duplicate event ignored (concurrent)", extra={"event_id": event.id})
                return False
            handler.apply(session, event)  # its errors propagate: nothing was recorded, consume() decides
            self.dead_letters.resolved(session, event.id)  # a dead letter sent again succeeded
        log.info(
            "event processed", extra={"event_id": event.id, "event_type": event.type, "request_id": event.request_id}
        )
        return True

    def _dead_letter(self, message: dict[str, Any], error: Exception, attempts: int) -> None:
        try:
            logged = self._record_dead_letter(message, error, attempts)
        except IntegrityError:  # a concurrent delivery of the same event inserted the row first: update it
            logged = self._record_dead_letter(message, error, attempts)
        log.error("event dead-lettered", extra=logged, exc_info=error)

    def _record_dead_letter(self, message: dict[str, Any], error: Exception, attempts: int) -> dict[str, Any]:
        with self.db.transaction() as session:
            letter = self.dead_letters.record(session, message, error, attempts)
            return {
                "event_id": letter.event_id,
                "event_type": letter.type,
                "error": letter.error_class,
                "attempts": letter.attempts,
                "request_id": letter.request_id,
            }

    def register_task(self, celery: Celery) -> Any:
        """The Celery task ``<service>.handle_event.v1`` feeding this consumer."""
        from .celery_app import PUBLISH_TIMEOUT  # noqa: PLC0415 - see publish_pending

        consumer = self

        @celery.task(  # type: ignore[untyped-decorator]  # Celery ships no type information
            name=handle_event_task(self.service),
            bind=True,
            max_retries=self.retries,
            autoretry_for=(Exception,),
            retry_backoff=True,
            retry_backoff_max=300,
            retry_jitter=True,
            retry_kwargs={"timeout": PUBLISH_TIMEOUT, "confirm_timeout": PUBLISH_TIMEOUT},
        )
        def handle_event(task: Any, message: dict[str, Any]) -> bool:
            # consume() raises only what is worth retrying, and dead-letters the event on the last attempt
            return consumer.consume(message, attempt=task.request.retries + 1)

        return handle_event


@dataclass(frozen=True)
class Outbox:
    """A service's outbox as domain code sees it: ``outbox.add(session, CustomerDeleted(customer_id=7))``."""

    models: MessagingModels
    source: str
    request_id: str | None = None

    def add(self, session: Session, payload: Any) -> Event[Any]:
        return record_event(session, self.models, payload, source=self.source, request_id=self.request_id)

    def event_rows(self, payloads: list[Any]) -> list[dict[str, Any]]:
        """The outbox rows of many events (grouped by type), each validated, one schema pass per type: a
        batch job writes them with one statement (:meth:`add_many`, or its own bulk insert of
        ``models.OutboxEvent``) in its transaction."""
        occurred_at = datetime.now(UTC)
        rows: list[dict[str, Any]] = []
        by_contract: dict[type, list[Any]] = {}
        for payload in payloads:
            by_contract.setdefault(type(payload), []).append(payload)
        for kind, same in by_contract.items():
            declared = contract_of(kind)
            rows.extend(
                {
                    "event_id": str(uuid.uuid4()),
                    "type": declared.type,
                    "version": declared.version,
                    "occurred_at": occurred_at,
                    "data": data,
                    "request_id": self.request_id,
                }
                for data in declared.write_many(same)
            )
        return rows

    def add_many(self, session: Session, payloads: list[Any]) -> int:
        """Like :meth:`add` for many events at once, written by one statement."""
        rows = self.event_rows(payloads)
        if rows:
            session.execute(insert(cast(Table, self.models.OutboxEvent.__table__)), rows)
        return len(rows)
