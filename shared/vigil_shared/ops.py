"""Operator endpoints every service has: look into its outbox, inbox and dead letters, and send events again.

Redelivery is what an operator does after fixing a consumer bug or losing a broker queue: the event
goes back into the outbox and the relay publishes it again to every subscriber. Consumers record
every event id they processed, so a redelivery only reaches a consumer that has not processed the
event; the others count a duplicate and change nothing.

Dead letters are the events this service's consumer could never apply (``messaging.dead_letters``).
Once the cause is fixed, a retry sends the kept message to the service's own worker again: applied,
it leaves the list; failing again, it comes back with its attempts counted. A discard drops it.
"""

from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from kombu.exceptions import OperationalError as BrokerOperationalError
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from .authz import requires
from .errors import UNAVAILABLE, Problem, conflict, not_found
from .fields import Timestamp
from .http import PaginationArgs, page_schema, paginate
from .service import current_runtime, request_session

OPS_PERMISSION = "ops.manage"


class OutboxEventSchema(Schema):
    event_id = fields.String()
    type = fields.String()
    version = fields.Integer()
    occurred_at = Timestamp()
    published_at = Timestamp(allow_none=True)
    request_id = fields.String(allow_none=True)
    data = fields.Dict()


class ProcessedEventSchema(Schema):
    event_id = fields.String()
    type = fields.String()
    processed_at = Timestamp()
    duplicates = fields.Integer(metadata={"description": "Repeated deliveries absorbed without effect"})


class DeadLetterSchema(Schema):
    event_id = fields.String()
    type = fields.String()
    version = fields.Integer(allow_none=True)
    source = fields.String(allow_none=True, metadata={"description": "The service that published the event"})
    request_id = fields.String(allow_none=True)
    error_class = fields.String(metadata={"description": "Class of the error that made the event a dead letter"})
    error_message = fields.String(metadata={"description": "Its first line (never SQL, parameters or a payload value)"})
    attempts = fields.Integer(metadata={"description": "Deliveries tried, over every retry"})
    first_failed_at = Timestamp()
    last_failed_at = Timestamp()
    retried_at = Timestamp(
        allow_none=True, metadata={"description": "When an operator last sent it again (null once it failed again)"}
    )


class OutboxArgs(PaginationArgs):
    type = fields.String(validate=validate.Length(max=100))


def ops_blueprint(service: str) -> Blueprint:
    blp = Blueprint(
        f"ops_{service}",
        __name__,
        url_prefix=f"/api/v1/ops/{service}",
        description=f"Operations of the {service} service: outbox, inbox and dead letters",
    )
    page = page_schema(OutboxEventSchema, f"{service.title()}OutboxPage")
    dead_letter_page = page_schema(DeadLetterSchema, f"{service.title()}DeadLetterPage")

    @blp.route("/outbox")
    class Outbox(MethodView):
        @requires(OPS_PERMISSION)
        @blp.arguments(OutboxArgs, location="query", as_kwargs=True)
        @blp.response(200, page)
        def get(self, page: int, per_page: int, type: str | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
            """Events this service wrote, newest first."""
            model = current_runtime().messaging.OutboxEvent
            statement = select(model).order_by(model.position.desc())
            if type:
                statement = statement.where(model.type == type)
            result = paginate(request_session(), statement, page, per_page)
            return result.body(), 200, result.headers()

    @blp.route("/outbox/<string:event_id>/redeliver", methods=["POST"])
    @requires(OPS_PERMISSION)
    @blp.response(202, OutboxEventSchema)
    def redeliver(event_id: str) -> Any:
        """Publish an event again to every subscriber (idempotent consumers absorb the repeat)."""
        session = request_session()
        model = current_runtime().messaging.OutboxEvent
        event = session.scalar(select(model).where(model.event_id == event_id))
        if event is None:
            raise not_found("event")
        event.published_at = None
        session.commit()
        return event

    @blp.route("/inbox/<string:event_id>")
    @requires(OPS_PERMISSION)
    @blp.response(200, ProcessedEventSchema)
    def inbox(event_id: str) -> Any:
        """Whether this service processed an event, when, and how many repeats it absorbed."""
        processed = request_session().get(current_runtime().messaging.ProcessedEvent, event_id)
        if processed is None:
            raise not_found("processed event")
        return processed

    def dead_letter(event_id: str) -> Any:
        found = request_session().get(current_runtime().messaging.DeadLetter, event_id)
        if found is None:
            raise not_found("dead letter")
        return found

    @blp.route("/dead-letters")
    @requires(OPS_PERMISSION)
    @blp.arguments(OutboxArgs, location="query", as_kwargs=True)
    @blp.response(200, dead_letter_page)
    def dead_letters(page: int, per_page: int, type: str | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
        """Events this service's consumer could never apply, most recently failed first.

        Only failures that repeating cannot fix land here at once (an unknown contract, invalid data, an
        error in a handler; a violated constraint after a second attempt); a database or broker outage is
        retried with backoff and lands here only after its last retry.
        """
        model = current_runtime().messaging.DeadLetter
        statement = select(model).order_by(model.last_failed_at.desc(), model.event_id)
        if type:
            statement = statement.where(model.type == type)
        result = paginate(request_session(), statement, page, per_page)
        return result.body(), 200, result.headers()

    @blp.route("/dead-letters/<string:event_id>")
    class DeadLetterItem(MethodView):
        @requires(OPS_PERMISSION)
        @blp.response(200, DeadLetterSchema)
        @blp.alt_response(404, description="No dead letter with this event id")
        def get(self, event_id: str) -> Any:
            """One dead letter: the event, the error, when and how often it failed."""
            return dead_letter(event_id)

        @requires(OPS_PERMISSION)
        @blp.response(204)
        @blp.alt_response(404, description="No dead letter with this event id")
        def delete(self, event_id: str) -> None:
            """Discard a dead letter: the event is not applied (a later redelivery would be tried afresh)."""
            session = request_session()
            session.delete(dead_letter(event_id))
            session.commit()

    @blp.route("/dead-letters/<string:event_id>/retry", methods=["POST"])
    @requires(OPS_PERMISSION)
    @blp.response(202, DeadLetterSchema)
    @blp.alt_response(404, description="No dead letter with this event id")
    @blp.alt_response(409, description="The message was not kept, so it cannot be sent again")
    @blp.alt_response(503, description="The broker is unavailable; nothing was sent")
    def retry_dead_letter(event_id: str) -> Any:
        """Send a dead letter to this service's worker again, once its cause is fixed.

        Applied, it leaves the list; failing again, it stays, with the new error and its attempts added.
        """
        runtime, session = current_runtime(), request_session()
        letter = dead_letter(event_id)
        dead_letters = runtime.dead_letters()
        message = dead_letters.message_of(letter)
        if not isinstance(message, dict):
            raise conflict("The message of this dead letter was not kept; it cannot be sent again.")
        dead_letters.mark_retried(letter)
        session.commit()  # before sending: once the worker has the message, it may update or remove the row
        try:
            runtime.deliver_to_self(message)
        except (BrokerOperationalError, ConnectionError, TimeoutError) as exc:
            letter.retried_at = None
            session.commit()
            raise Problem(
                503,
                "The message broker is unavailable; nothing was sent. Try again shortly.",
                type=UNAVAILABLE,
                headers={"Retry-After": "5"},
            ) from exc
        return letter

    return blp
