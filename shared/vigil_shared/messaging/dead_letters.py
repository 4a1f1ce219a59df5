"""Which consumer failures are worth retrying, and the dead letters that keep the others for operators.

A consumer retries an event only when the failure is *transient*: the database or the broker did
not answer, or the database refused this attempt because of another transaction (a lock timeout, a
deadlock, a serialization failure, a row changed under it). Anything else (an unknown contract,
data that fails its contract, a programming error in a handler) fails the same way every time, so
the event goes straight to the service's ``dead_letters`` table, where an operator sees it and, once
the cause is fixed, sends it again or discards it (``vigil_shared.ops``). A violated constraint is
tried once more: a concurrent transaction may have inserted the same key first, which the second
attempt sees; one that fails again will fail every time.

A dead letter keeps the event id, type, version, source and request id, the error's class and
first line, when it failed and how many attempts it took. The message itself is kept only
encrypted with the service's cipher, like stored idempotency replies, so a retry can send it
again without a confidential value ever being stored in plaintext.
"""

from __future__ import annotations

import json
import logging
import sys
import uuid
from typing import Any

from marshmallow import ValidationError
from sqlalchemy import delete
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError, StatementError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError

from ..crypto import FieldCipher
from ..db import utcnow

log = logging.getLogger("vigil.messaging")

# PostgreSQL refusals that another transaction caused: serialization failure, deadlock, lock not available
# (lock_timeout), query canceled (statement_timeout), and the connection and resource classes.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "57014"})
TRANSIENT_SQLSTATE_CLASSES = ("08", "53", "57P")
SQLITE_BUSY, SQLITE_LOCKED = 5, 6
ERROR_MESSAGE_LENGTH = 500


class RetryLater(Exception):
    """Raised by a handler whose failure is transient for a reason the classification cannot see
    (an external system that timed out): the event is retried with backoff, not dead-lettered."""


TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    RetryLater,
    OperationalError,  # SQLAlchemy's: connection lost, database locked, lock timeout, deadlock, serialization
    DisconnectionError,
    PoolTimeoutError,  # no pooled connection came free in time
    StaleDataError,  # another transaction changed or removed the row first
    ConnectionError,
    TimeoutError,
)


def is_broker_error(error: BaseException) -> bool:
    """kombu could not reach the broker.

    Looked up without importing kombu: a process that never loaded it (a web process, which writes its
    events to the outbox) cannot have raised one of its errors, and must not load it for the asking.
    """
    kombu_exceptions = sys.modules.get("kombu.exceptions")
    return kombu_exceptions is not None and isinstance(error, kombu_exceptions.OperationalError)


def is_transient(error: BaseException) -> bool:
    """True when the same event may well succeed if tried again later."""
    if isinstance(error, TRANSIENT_ERRORS) or is_broker_error(error):
        return True
    if isinstance(error, DBAPIError):
        if error.connection_invalidated:
            return True
        sqlstate = getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None) or ""
        if sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith(TRANSIENT_SQLSTATE_CLASSES):
            return True
        sqlite_code = getattr(error.orig, "sqlite_errorcode", None)
        return isinstance(sqlite_code, int) and sqlite_code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED)
    return False


def worth_retrying(error: BaseException, attempt: int) -> bool:
    """Whether attempt number ``attempt`` failing with ``error`` deserves another (retries permitting)."""
    return is_transient(error) or (isinstance(error, IntegrityError) and attempt == 1)


def describe(error: BaseException) -> tuple[str, str]:
    """The error's class and a one-line message safe to store and show.

    A database error keeps the driver's first line only (no SQL, no parameters, no ``DETAIL`` naming
    a value); a validation error its field messages, which name rules, never the values refused.
    """
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    if isinstance(error, StatementError) and error.orig is not None:
        text = str(error.orig)
    elif isinstance(error, ValidationError):
        text = json.dumps(error.messages, sort_keys=True)
    else:
        text = str(error)
    first_line = text.strip().splitlines()[0] if text.strip() else ""
    return name[:200], first_line[:ERROR_MESSAGE_LENGTH]


def _text(value: Any, length: int) -> str | None:
    return value[:length] if isinstance(value, str) and value else None


class DeadLetters:
    """A service's ``dead_letters`` table: record a failed event, resolve it, read back its message."""

    def __init__(self, model: Any, cipher: FieldCipher):  # the service's ``DeadLetter`` model
        self.model = model
        self.cipher = cipher

    def record(self, session: Session, message: Any, error: BaseException, attempts: int) -> Any:
        """Adds the event to the dead letters, or updates it when it is there already (failed again)."""
        envelope = message if isinstance(message, dict) else {}
        event_id = _text(envelope.get("id"), 36) or str(uuid.uuid4())  # an id-less message still gets a row
        letter = session.get(self.model, event_id)
        now = utcnow()
        if letter is None:
            letter = self.model(event_id=event_id, attempts=0, first_failed_at=now)
            session.add(letter)
        error_class, error_message = describe(error)
        version = envelope.get("version")
        letter.type = _text(envelope.get("type"), 100) or "(unknown)"
        letter.version = version if isinstance(version, int) and not isinstance(version, bool) else None
        letter.source = _text(envelope.get("source"), 100)
        letter.request_id = _text(envelope.get("request_id"), 64)
        letter.error_class = error_class
        letter.error_message = error_message
        letter.attempts += attempts
        letter.last_failed_at = now
        letter.retried_at = None
        letter.message = self.cipher.encrypt(json.dumps(message, sort_keys=True, default=str))
        return letter

    def resolved(self, session: Session, event_id: str) -> None:
        """The event was applied (after a retry): it is no longer a dead letter."""
        session.execute(delete(self.model).where(self.model.event_id == event_id))

    def message_of(self, letter: Any) -> Any:
        """The message as it was received, to send again."""
        return json.loads(self.cipher.decrypt(letter.message) or "null")

    def mark_retried(self, letter: Any) -> None:
        """An operator sends it again (it stays until applied; failing again clears this)."""
        letter.retried_at = utcnow()
