"""Which consumer failures are retried, and the dead letters that keep the others."""

import json
import sqlite3
import uuid

import pytest
from conftest import Note, messaging
from kombu.exceptions import OperationalError as BrokerOperationalError
from marshmallow import ValidationError
from sqlalchemy import func, select
from sqlalchemy.exc import DisconnectionError, IntegrityError, OperationalError, ProgrammingError
from sqlalchemy.orm.exc import StaleDataError

from vigil_shared.config import Settings
from vigil_shared.crypto import FieldCipher, generate_key
from vigil_shared.messaging.celery_app import make_celery
from vigil_shared.messaging.contracts import CustomerDeleted, UnknownContract, new_event
from vigil_shared.messaging.dead_letters import DeadLetters, RetryLater, describe, is_transient, worth_retrying
from vigil_shared.messaging.outbox import RETRIES, EventConsumer

CIPHER = FieldCipher([generate_key()], "index")


class _PgError(Exception):
    def __init__(self, message: str, sqlstate: str):
        super().__init__(message)
        self.sqlstate = sqlstate


def _db_error(kind, message="boom", sqlstate=None, orig=None):
    return kind("INSERT INTO t VALUES (?)", ("123-45-6789",), orig or _PgError(message, sqlstate))


@pytest.mark.parametrize(
    "error",
    [
        _db_error(OperationalError, "server closed the connection unexpectedly"),
        _db_error(OperationalError, "database is locked", orig=sqlite3.OperationalError("database is locked")),
        _db_error(ProgrammingError, "could not serialize access", "40001"),
        _db_error(ProgrammingError, "deadlock detected", "40P01"),
        _db_error(ProgrammingError, "canceling statement due to lock timeout", "55P03"),
        _db_error(ProgrammingError, "too many connections", "53300"),
        DisconnectionError("gone"),
        StaleDataError("UPDATE statement on table 'customers' expected to update 1 row(s); 0 were matched."),
        BrokerOperationalError("connection refused"),
        ConnectionError("database went away"),
        TimeoutError("timed out"),
        RetryLater("the bureau did not answer"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_outages_and_lost_races_are_transient(error):
    assert is_transient(error)


@pytest.mark.parametrize(
    "error",
    [
        ValidationError({"customer_id": ["Not a valid integer."]}),
        UnknownContract("no contract for event customer.exploded v1"),
        KeyError("customer_id"),
        TypeError("unsupported operand"),
        _db_error(IntegrityError, "duplicate key value violates unique constraint", "23505"),
        _db_error(ProgrammingError, "relation does not exist", "42P01"),
        RuntimeError("a bug"),
    ],
    ids=lambda error: type(error).__name__,
)
def test_errors_that_repeat_are_permanent(error):
    assert not is_transient(error)


def test_a_violated_constraint_is_tried_once_more_in_case_a_concurrent_insert_won():
    duplicate = _db_error(IntegrityError, "duplicate key value violates unique constraint", "23505")
    assert worth_retrying(duplicate, attempt=1)
    assert not worth_retrying(duplicate, attempt=2), "failing again, it will fail every time"
    assert not worth_retrying(KeyError("customer_id"), attempt=1)
    assert worth_retrying(ConnectionError("down"), attempt=7)


def test_a_described_database_error_names_no_sql_and_no_value():
    error = _db_error(
        IntegrityError,
        'duplicate key value violates unique constraint "uq_x"\nDETAIL:  Key (ssn)=(123-45-6789) already exists.',
        "23505",
    )
    kind, message = describe(error)
    assert kind == "sqlalchemy.exc.IntegrityError"
    assert message == 'duplicate key value violates unique constraint "uq_x"'
    assert describe(KeyError("customer_id")) == ("KeyError", "'customer_id'")
    assert (
        describe(ValidationError({"customer_id": ["Not a valid integer."]}))[1]
        == '{"customer_id": ["Not a valid integer."]}'
    )
    assert len(describe(ValueError("x" * 2000))[1]) == 500


def _consumer(db, handler) -> EventConsumer:
    consumer = EventConsumer(service="property", db=db, models=messaging, cipher=CIPHER)
    consumer.on(CustomerDeleted)(handler)
    return consumer


def _letters(db):
    with db.new_session() as session:
        return session.scalars(select(messaging.DeadLetter)).all()


def test_a_permanent_failure_is_a_dead_letter_after_one_attempt(db):
    calls = []

    def broken(session, event):
        calls.append(event.id)
        session.add(Note(text="half done"))
        raise KeyError("location_id")

    message = new_event(CustomerDeleted(customer_id=7), source="customer", request_id="req-7").to_message()
    assert _consumer(db, broken).consume(message) is False
    assert len(calls) == 1
    [letter] = _letters(db)
    assert (letter.event_id, letter.type, letter.version, letter.source, letter.request_id) == (
        message["id"],
        "customer.deleted",
        1,
        "customer",
        "req-7",
    )
    assert (letter.error_class, letter.error_message, letter.attempts) == ("KeyError", "'location_id'", 1)
    assert letter.first_failed_at == letter.last_failed_at and letter.retried_at is None
    assert '"customer_id"' not in letter.message, "the message is kept encrypted only"
    assert DeadLetters(messaging.DeadLetter, CIPHER).message_of(letter) == message
    with db.new_session() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 0, "the handler's work was rolled back"
        assert session.get(messaging.ProcessedEvent, message["id"]) is None, "so that a retry can apply it"


def test_a_message_that_breaks_its_contract_is_a_dead_letter(db):
    consumer = _consumer(db, lambda session, event: None)
    bad_data = new_event(CustomerDeleted(customer_id=1), source="customer").to_message()
    bad_data["data"] = {"customer_id": "x"}
    unknown = new_event(CustomerDeleted(customer_id=1), source="customer").to_message() | {"version": 9}
    no_id = {"type": "customer.deleted", "data": {}}
    for message in (bad_data, unknown, no_id):
        assert consumer.consume(message) is False
    letters = {letter.event_id: letter for letter in _letters(db)}
    assert (letters[bad_data["id"]].error_class, letters[bad_data["id"]].error_message) == (
        "marshmallow.exceptions.ValidationError",
        '{"customer_id": ["Not a valid integer."]}',
    )
    assert (letters[unknown["id"]].error_class, letters[unknown["id"]].version) == (
        "vigil_shared.messaging.contracts.UnknownContract",
        9,
    )
    assert len(letters) == 3, "a message without an id gets a row of its own"


def test_a_transient_failure_is_retried_then_dead_lettered_on_the_last_attempt(db):
    def unreachable(session, event):
        raise ConnectionError("database went away")

    consumer = _consumer(db, unreachable)
    message = new_event(CustomerDeleted(customer_id=2), source="customer").to_message()
    for attempt in range(1, RETRIES + 1):
        with pytest.raises(ConnectionError):
            consumer.consume(message, attempt=attempt)
    assert _letters(db) == []
    assert consumer.consume(message, attempt=RETRIES + 1) is False
    [letter] = _letters(db)
    assert (letter.error_class, letter.attempts) == ("ConnectionError", RETRIES + 1)


def test_the_task_retries_only_transient_failures(db):
    celery = make_celery(
        Settings.from_env(
            "property", internal_secret="s" * 40, broker_url="memory://", encryption_keys=("k",), blind_index_key="b"
        )
    )
    celery.conf.task_always_eager = True
    attempts = []

    failures = {
        1: ConnectionError("down"),
        2: TypeError("a bug"),
        3: _db_error(IntegrityError, "duplicate key value violates unique constraint", "23505"),
    }

    def handler(session, event):
        attempts.append(event.payload.customer_id)
        raise failures[event.payload.customer_id]

    task = _consumer(db, handler).register_task(celery)
    for customer_id in failures:
        task.apply(args=[new_event(CustomerDeleted(customer_id=customer_id), source="customer").to_message()])
    assert attempts.count(2) == 1, "a permanent failure is not retried"
    assert attempts.count(3) == 2, "a violated constraint is tried once more, in case a concurrent insert won"
    assert attempts.count(1) == RETRIES + 1
    assert sorted((letter.error_class, letter.attempts) for letter in _letters(db)) == [
        ("ConnectionError", RETRIES + 1),
        ("TypeError", 1),
        ("sqlalchemy.exc.IntegrityError", 2),
    ]


def test_failing_again_adds_the_attempts_and_applying_resolves_the_dead_letter(db):
    fixed = []

    def handler(session, event):
        if not fixed:
            raise TypeError("a bug")
        session.add(Note(text="applied"))

    consumer = _consumer(db, handler)
    message = new_event(CustomerDeleted(customer_id=3), source="customer").to_message()
    consumer.consume(message)
    with db.transaction() as session:
        DeadLetters(messaging.DeadLetter, CIPHER).mark_retried(session.get(messaging.DeadLetter, message["id"]))
    consumer.consume(message)  # sent again before the fix: fails again
    [letter] = _letters(db)
    assert letter.attempts == 2 and letter.retried_at is None and letter.last_failed_at >= letter.first_failed_at
    fixed.append(True)
    assert consumer.consume(message) is True
    assert _letters(db) == [], "applied at last, it is no longer a dead letter"
    with db.new_session() as session:
        assert session.scalar(select(func.count()).select_from(Note)) == 1


def test_a_version_its_handler_does_not_read_is_a_dead_letter(db):
    consumer = _consumer(db, lambda session, event: pytest.fail("called with another version's payload"))
    consumer.handlers["customer.deleted"].payload_type = Note  # as if it read only another version
    assert consumer.consume(new_event(CustomerDeleted(customer_id=4), source="customer").to_message()) is False
    [letter] = _letters(db)
    assert letter.error_class.endswith("UnknownContract")
    assert json.loads(CIPHER.decrypt(letter.message))["data"] == {"customer_id": 4}
    assert uuid.UUID(letter.event_id)
