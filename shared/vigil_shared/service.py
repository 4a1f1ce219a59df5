"""One service's runtime objects: what its views, tasks and relay share (settings, database, broker, outbox).

The command line that builds and runs them is :mod:`vigil_shared.runtime`; this module sits below
the web layer, so views reach the runtime (:func:`request_session`, :func:`request_outbox`)
without importing the program that created the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from celery import Celery
from flask import current_app, g
from sqlalchemy.orm import Session

from .config import Settings
from .crypto import FieldCipher
from .db import POOL_SIZE, Database
from .messaging.celery_app import make_celery, ping_broker, send_to_queue
from .messaging.contracts import handle_event_task
from .messaging.dead_letters import DeadLetters
from .messaging.outbox import EventConsumer, MessagingModels, Outbox, OutboxRelay

EXTENSION = "vigil_runtime"


@dataclass
class ServiceRuntime:
    """What a service's views, tasks and relay share: settings, database, broker, outbox tables."""

    settings: Settings
    db: Database
    messaging: MessagingModels
    celery: Celery = field(repr=False)
    cipher: FieldCipher = field(repr=False)

    @classmethod
    def build(cls, settings: Settings, messaging: MessagingModels) -> ServiceRuntime:
        return cls(
            settings=settings,
            db=Database(settings.database_url, pool_size=max(settings.web_threads, POOL_SIZE)),
            messaging=messaging,
            celery=make_celery(settings),
            cipher=FieldCipher(settings.encryption_keys, settings.blind_index_key),
        )

    @property
    def name(self) -> str:
        return self.settings.name

    def ready_checks(self) -> dict[str, Callable[[], None]]:
        return {"database": self.db.ping, "broker": lambda: ping_broker(self.settings)}

    def outbox(self, request_id: str | None = None) -> Outbox:
        return Outbox(self.messaging, self.name, request_id)

    def consumer(self) -> EventConsumer:
        return EventConsumer(service=self.name, db=self.db, models=self.messaging, cipher=self.cipher)

    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.messaging.DeadLetter, self.cipher)

    def deliver_to_self(self, message: dict[str, Any]) -> None:
        """Sends an event to this service's own worker, as the relay of its producer would."""
        send_to_queue(
            self.celery,
            handle_event_task(self.name),
            self.settings.queue_name(),
            [message],
            headers={"request_id": message.get("request_id")},
        )

    def relay(self) -> OutboxRelay:
        return OutboxRelay(
            service=self.name,
            db=self.db,
            models=self.messaging,
            celery=self.celery,
            queue_name=self.settings.queue_name,
            interval=self.settings.relay_interval,
        )


def current_runtime() -> ServiceRuntime:
    runtime: ServiceRuntime = current_app.extensions[EXTENSION]
    return runtime


def request_outbox() -> Outbox:
    """The current service's outbox, stamped with this request's id."""
    return current_runtime().outbox(g.get("request_id"))


def request_session() -> Session:
    return current_runtime().db.request_session()
