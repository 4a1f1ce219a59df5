"""Operator endpoints every service has: look into its outbox and inbox, and redeliver an event.

Redelivery is what an operator does after fixing a consumer bug or losing a broker queue: the event
goes back into the outbox and the relay publishes it again to every subscriber. Consumers record
every event id they processed, so a redelivery only reaches a consumer that has not processed the
event; the others count a duplicate and change nothing.
"""
from __future__ import annotations

from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import select

from .authz import requires
from .errors import not_found
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


class OutboxArgs(PaginationArgs):
    type = fields.String(validate=validate.Length(max=100))


def ops_blueprint(service: str) -> Blueprint:
    blp = Blueprint(f"ops_{service}", __name__, url_prefix=f"/api/v1/ops/{service}",
                    description=f"Operations of the {service} service: outbox and inbox")
    page = page_schema(OutboxEventSchema, f"{service.title()}OutboxPage")

    @blp.route("/outbox")
    class Outbox(MethodView):
        @requires(OPS_PERMISSION)
        @blp.arguments(OutboxArgs, location="query", as_kwargs=True)
        @blp.response(200, page)
        def get(self, page: int, per_page: int,
                type: str | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
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

    return blp
