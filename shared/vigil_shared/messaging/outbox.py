"""Transactional outbox and inbox tables, the relay that publishes the outbox, and the consumer.

A service writes its events with :func:`record_event` in the same transaction as the change, so an
event exists if and only if the change was committed. The relay (its own process) publishes
unpublished rows to every subscriber's queue and marks them published; a crash between the two
publishes again, which consumers absorb because :class:`EventConsumer` records every processed
event id in the same transaction as its effect.
"""
from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from celery import Celery
from marshmallow import ValidationError
from sqlalchemy import JSON, BigInteger, Integer, String, Text, delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from ..db import Database, UTCDateTime, utcnow
from .celery_app import PUBLISH_TIMEOUT, send_to_queue
from .contracts import Event, UnknownContract, handle_event_task, new_event, parse_event, subscribers

log = logging.getLogger("vigil.messaging")

OUTBOX_RETENTION = timedelta(days=7)


@dataclass(frozen=True)
class MessagingModels:
    """A service's own copies of the tables below (their columns are those of ``messaging_models``)."""

    OutboxEvent: type[Any]
    ProcessedEvent: type[Any]
    IdempotencyRecord: type[Any]


def messaging_models(Base: type[DeclarativeBase]) -> MessagingModels:
    """Declares ``outbox_events`` and ``processed_events`` on a service's own metadata.

    The classes derive from the base passed in, which mypy cannot take as a static base class.
    """

    class OutboxEvent(Base):  # type: ignore[valid-type,misc]
        __tablename__ = "outbox_events"

        position: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
                                              autoincrement=True)
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

    class IdempotencyRecord(Base):  # type: ignore[valid-type,misc]
        """The first response to a POST sent with an ``Idempotency-Key`` (see ``vigil_shared.idempotency``)."""

        __tablename__ = "idempotency_keys"

        caller: Mapped[str] = mapped_column(String(100), primary_key=True)
        key: Mapped[str] = mapped_column(String(200), primary_key=True)
        request_hash: Mapped[str] = mapped_column(String(64))
        state: Mapped[str] = mapped_column(String(20))
        response_status: Mapped[int | None] = mapped_column(Integer)
        response_body: Mapped[str | None] = mapped_column(Text)
        response_headers: Mapped[dict[str, Any] | None] = mapped_column(JSON)
        created_at: Mapped[datetime] = mapped_column(UTCDateTime())
        expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)

    return MessagingModels(OutboxEvent, ProcessedEvent, IdempotencyRecord)


def record_event(session: Session, models: MessagingModels, event_type: str, data: dict[str, Any], *, source: str,
                 request_id: str | None = None, version: int = 1) -> Event:
    """Adds a validated event to the outbox inside the caller's transaction."""
    event = new_event(event_type, data, source=source, version=version, request_id=request_id)
    session.add(models.OutboxEvent(event_id=event.id, type=event.type, version=event.version,
                                   occurred_at=event.occurred_at, data=event.data, request_id=request_id))
    return event


class OutboxRelay:
    """Publishes a service's outbox, oldest first, to every subscriber's queue."""

    def __init__(self, *, service: str, db: Database, models: MessagingModels, celery: Celery,
                 queue_name: Callable[[str], str], interval: float = 0.2, batch_size: int = 100):
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
        OutboxEvent = self.models.OutboxEvent
        with self.db.transaction() as session:
            rows = session.scalars(
                select(OutboxEvent).where(OutboxEvent.published_at.is_(None))
                .order_by(OutboxEvent.position).limit(self.batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                message = Event(id=row.event_id, type=row.type, version=row.version, occurred_at=row.occurred_at,
                                data=row.data, source=self.service, request_id=row.request_id).to_message()
                for subscriber in subscribers(row.type):
                    send_to_queue(self.celery, handle_event_task(subscriber), self.queue_name(subscriber),
                                  [message], headers={"request_id": row.request_id})
                row.published_at = utcnow()
                log.info("event published", extra={"event_id": row.event_id, "event_type": row.type,
                                                    "request_id": row.request_id})
        self.last_cycle_ok = time.monotonic()
        return len(rows)

    def prune(self) -> None:
        OutboxEvent = self.models.OutboxEvent
        IdempotencyRecord = self.models.IdempotencyRecord
        with self.db.transaction() as session:
            session.execute(delete(OutboxEvent).where(OutboxEvent.published_at < utcnow() - OUTBOX_RETENTION))
            session.execute(delete(IdempotencyRecord).where(IdempotencyRecord.expires_at < utcnow()))

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


Handler = Callable[[Session, Event], None]


class EventConsumer:
    """Dispatches incoming events to handlers, exactly once per event id (the inbox)."""

    def __init__(self, *, service: str, db: Database, models: MessagingModels):
        self.service = service
        self.db = db
        self.models = models
        self.handlers: dict[str, Handler] = {}

    def on(self, event_type: str) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.handlers[event_type] = handler
            return handler
        return register

    def consume(self, message: dict[str, Any]) -> bool:
        """Applies one event; returns False when it was already processed or has no handler."""
        event = parse_event(message)
        handler = self.handlers.get(event.type)
        if handler is None:
            log.warning("no handler for event", extra={"event_type": event.type, "event_id": event.id})
            return False
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
            handler(session, event)  # its own errors propagate: the task retries, nothing was recorded
        log.info("event processed", extra={"event_id": event.id, "event_type": event.type,
                                            "request_id": event.request_id})
        return True

    def register_task(self, celery: Celery) -> Any:
        """The Celery task ``<service>.handle_event.v1`` feeding this consumer."""
        consumer = self

        @celery.task(  # type: ignore[untyped-decorator]  # Celery ships no type information
                     name=handle_event_task(self.service), bind=True, max_retries=10,
                     autoretry_for=(Exception,), dont_autoretry_for=(ValidationError, UnknownContract),
                     retry_backoff=True, retry_backoff_max=300, retry_jitter=True,
                     retry_kwargs={"timeout": PUBLISH_TIMEOUT, "confirm_timeout": PUBLISH_TIMEOUT})
        def handle_event(task: Any, message: dict[str, Any]) -> bool:
            return consumer.consume(message)

        return handle_event


@dataclass(frozen=True)
class Outbox:
    """A service's outbox as domain code sees it: ``outbox.add(session, "customer.created", {...})``."""

    models: MessagingModels
    source: str
    request_id: str | None = None

    def add(self, session: Session, event_type: str, data: dict[str, Any], version: int = 1) -> Event:
        return record_event(session, self.models, event_type, data, source=self.source,
                            request_id=self.request_id, version=version)
