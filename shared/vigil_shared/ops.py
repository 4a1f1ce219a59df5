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
from marshmallow import Schema, fields, validate
from sqlalchemy import select
from sqlalchemy.orm import Session

from .authz import requires
from .commands import Context, command
from .errors import conflict, not_found, unavailable
from .fields import Timestamp
from .http import PaginationArgs, answers, page_schema, paginate
from .messaging.dead_letters import is_broker_error
from .service import ServiceRuntime, current_runtime, request_session
from .web import request_context

OPS_PERMISSION = "ops.manage"
BROKER_ERRORS = (ConnectionError, TimeoutError)  # and kombu's (is_broker_error), without importing kombu here


# --- commands: what an operator changes, from a view or a script alike -------------------------------


@command
def redeliver_event(ctx: Context, runtime: ServiceRuntime, event_id: str) -> Any:
    """Puts a published event back in the outbox: the relay publishes it again to every subscriber."""
    ctx.require(OPS_PERMISSION)
    model = runtime.messaging.OutboxEvent
    event = ctx.session.scalar(select(model).where(model.event_id == event_id))
    if event is None:
        raise not_found("event")
    event.published_at = None
    return event


def find_dead_letter(session: Session, runtime: ServiceRuntime, event_id: str) -> Any:
    found = session.get(runtime.messaging.DeadLetter, event_id)
    if found is None:
        raise not_found("dead letter")
    return found


@command
def discard_dead_letter(ctx: Context, runtime: ServiceRuntime, event_id: str) -> None:
    """Drops a dead letter: its event is not applied."""
    ctx.require(OPS_PERMISSION)
    ctx.session.delete(find_dead_letter(ctx.session, runtime, event_id))


@command
def _mark_for_retry(ctx: Context, runtime: ServiceRuntime, event_id: str) -> tuple[Any, dict[str, Any]]:
    ctx.require(OPS_PERMISSION)
    letter = find_dead_letter(ctx.session, runtime, event_id)
    dead_letters = runtime.dead_letters()
    message = dead_letters.message_of(letter)
    if not isinstance(message, dict):
        raise conflict("The message of this dead letter was not kept; it cannot be sent again.")
    dead_letters.mark_retried(letter)
    return letter, message


@command
def _unmark_retry(ctx: Context, letter: Any) -> None:
    letter.retried_at = None


def send_dead_letter_again(ctx: Context, runtime: ServiceRuntime, event_id: str) -> Any:
    """Sends a dead letter's message to this service's own worker again; the letter as it now stands.

    Two transactions, on purpose: the retry is marked and committed before sending (once the worker
    has the message it may update or remove the row), and taken back when the broker refuses it (503).
    """
    letter, message = _mark_for_retry(ctx, runtime, event_id)
    try:
        runtime.deliver_to_self(message)
    except Exception as exc:
        if not (isinstance(exc, BROKER_ERRORS) or is_broker_error(exc)):
            raise
        _unmark_retry(ctx, letter)
        raise unavailable("The message broker is unavailable; nothing was sent. Try again shortly.") from exc
    return letter


class OutboxEventSchema(Schema):
    """An event as an operator sees it: what runs the pipeline, never the event's ``data``.

    ``ops.manage`` is the right to operate the pipeline, not to read every office's business data (credit
    scores, amounts, names): the payload is left out whatever else the caller holds. An event's effect is
    read through the API of the record it concerns, under that record's own rights; ``request_id`` ties an
    event to the request that wrote it.
    """

    event_id = fields.String()
    type = fields.String()
    version = fields.Integer()
    occurred_at = Timestamp()
    published_at = Timestamp(allow_none=True)
    request_id = fields.String(allow_none=True, metadata={"description": "The request that wrote the event"})


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
        return redeliver_event(request_context(), current_runtime(), event_id)

    @blp.route("/inbox/<string:event_id>")
    @requires(OPS_PERMISSION)
    @blp.response(200, ProcessedEventSchema)
    def inbox(event_id: str) -> Any:
        """Whether this service processed an event, when, and how many repeats it absorbed."""
        processed = request_session().get(current_runtime().messaging.ProcessedEvent, event_id)
        if processed is None:
            raise not_found("processed event")
        return processed

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
        @answers(blp, 200, DeadLetterSchema, not_found="No dead letter with this event id")
        def get(self, event_id: str) -> Any:
            """One dead letter: the event, the error, when and how often it failed."""
            return find_dead_letter(request_session(), current_runtime(), event_id)

        @requires(OPS_PERMISSION)
        @blp.response(204)
        @blp.alt_response(404, description="No dead letter with this event id")
        def delete(self, event_id: str) -> None:
            """Discard a dead letter: the event is not applied (a later redelivery would be tried afresh)."""
            discard_dead_letter(request_context(), current_runtime(), event_id)

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
        return send_dead_letter_again(request_context(), current_runtime(), event_id)

    return blp
