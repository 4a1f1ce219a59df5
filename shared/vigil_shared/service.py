"""One service's runtime objects: what its views, tasks and relay share (settings, database, broker, outbox).

The command line that builds and runs them is :mod:`vigil_shared.runtime`; this module sits below
the web layer, so views reach the runtime (:func:`request_session`, :func:`request_outbox`)
without importing the program that created the app.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, Any

from flask import current_app, g
from sqlalchemy.orm import Session

from .config import Settings
from .crypto import FieldCipher
from .db import POOL_SIZE, Database
from .messaging.contracts import handle_event_task
from .messaging.dead_letters import DeadLetters
from .messaging.outbox import EventConsumer, MessagingModels, Outbox, OutboxRelay

if TYPE_CHECKING:
    from celery import Celery

EXTENSION = "vigil_runtime"

# Celery and kombu (``.messaging.celery_app``) are imported where the broker is used: by a worker, a
# relay or a beat, and by the few web requests that send a task themselves (``send_task``). A web
# process otherwise writes its events to the outbox only; without them it is 6.6 MB smaller
# (bench/bench_idle_rss.py; shared/tests/test_web_imports.py keeps it so).


@dataclass
class ServiceRuntime:
    """What a service's views, tasks and relay share: settings, database, broker, outbox tables."""

    settings: Settings
    db: Database
    messaging: MessagingModels
    cipher: FieldCipher = field(repr=False)

    @classmethod
    def build(cls, settings: Settings, messaging: MessagingModels) -> ServiceRuntime:
        return cls(
            settings=settings,
            db=Database(settings.database_url, pool_size=max(settings.web_threads, POOL_SIZE)),
            messaging=messaging,
            cipher=FieldCipher(settings.encryption_keys, settings.blind_index_key),
        )

    @property
    def name(self) -> str:
        return self.settings.name

    @cached_property
    def celery(self) -> Celery:
        """This service's Celery app, built on first use (see above)."""
        from .messaging.celery_app import make_celery  # noqa: PLC0415 - see above

        return make_celery(self.settings)

    def ready_checks(self) -> dict[str, Callable[[], None]]:
        """What a worker, a relay or a beat needs to do its work: the database and the broker."""
        return {"database": self.db.ping, "broker": self.ping_broker}

    def web_ready_checks(self) -> dict[str, Callable[[], None]]:
        """What a web process needs to serve: its database. Its events go to the outbox in the same
        transaction; the broker's health is the relay's and the worker's (their own ``/readyz``)."""
        return {"database": self.db.ping}

    def ping_broker(self) -> None:
        from .messaging.celery_app import ping_broker  # noqa: PLC0415 - see above

        ping_broker(self.settings)

    def send_task(self, task_name: str, args: list[Any], headers: dict[str, Any] | None = None) -> None:
        """Sends a task to this service's own queue now (not through the outbox)."""
        from .messaging.celery_app import send_to_queue  # noqa: PLC0415 - see above

        send_to_queue(self.celery, task_name, self.settings.queue_name(), args, headers=headers)

    def outbox(self, request_id: str | None = None) -> Outbox:
        return Outbox(self.messaging, self.name, request_id)

    def consumer(self) -> EventConsumer:
        return EventConsumer(service=self.name, db=self.db, models=self.messaging, cipher=self.cipher)

    def dead_letters(self) -> DeadLetters:
        return DeadLetters(self.messaging.DeadLetter, self.cipher)

    def deliver_to_self(self, message: dict[str, Any]) -> None:
        """Sends an event to this service's own worker, as the relay of its producer would."""
        self.send_task(handle_event_task(self.name), [message], headers={"request_id": message.get("request_id")})

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
