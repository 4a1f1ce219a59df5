"""Operations: long work a caller started and follows (archive and unarchive sagas, later imports,
exports and credit pulls), designed once for every service.

An operation belongs to the service that runs it and to the caller who started it. It is created
with the list of its **steps** (one per participant and record: ``property:customer:12``), each
``pending`` until the participant reports it ``done`` or ``failed`` with its result (the items it
changed) or error. Completing a step is idempotent (a redelivered report changes nothing), and the
operation finishes — ``succeeded``, or ``failed`` when any step failed — when its last step is in.

Ids are ``<service>-<32 hex>``, so the gateway routes ``GET /operations/{id}`` to the owner without
a lookup, and lists the caller's operations by asking every service in :data:`OPERATION_OWNERS`.
The tables are declared on each owning service's metadata (:func:`operation_models`) and created
by its migration (:func:`create_operations_tables`).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema, fields, validate
from sqlalchemy import JSON, ForeignKey, Integer, String, func, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from .db import UTCDateTime, added, utcnow
from .errors import not_found
from .fields import Timestamp
from .http import answers, paginate
from .schema_spec import create_tables, drop_tables

# services whose operations the gateway lists for ``GET /operations`` (add one when it runs operations)
OPERATION_OWNERS: tuple[str, ...] = ("customer",)

STATUSES = ("pending", "running", "succeeded", "failed")
STEP_STATUSES = ("pending", "done", "failed")
ID_PATTERN = re.compile(r"^[a-z]+-[0-9a-f]{32}$")


def new_operation_id(service: str) -> str:
    return f"{service}-{uuid.uuid4().hex}"


def owner_of(operation_id: str) -> str | None:
    """The service that runs ``operation_id``, from the id itself (None when it is not an operation id)."""
    if not ID_PATTERN.match(operation_id):
        return None
    return operation_id.split("-", 1)[0]


@dataclass(frozen=True)
class OperationModels:
    Operation: type[Any]
    OperationStep: type[Any]


def operation_models(Base: type[DeclarativeBase]) -> OperationModels:
    """Declares ``operations`` and ``operation_steps`` on a service's own metadata."""

    class Operation(Base):  # type: ignore[valid-type,misc]
        __tablename__ = "operations"

        id: Mapped[str] = mapped_column(String(48), primary_key=True)
        kind: Mapped[str] = mapped_column(String(60))
        status: Mapped[str] = mapped_column(String(20))
        owner: Mapped[str] = mapped_column(String(100), index=True)  # the identity's subject
        target_type: Mapped[str] = mapped_column(String(40))
        target_id: Mapped[str] = mapped_column(String(60), index=True)
        steps_total: Mapped[int] = mapped_column(Integer, default=0)
        steps_done: Mapped[int] = mapped_column(Integer, default=0)
        options: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
        request_id: Mapped[str | None] = mapped_column(String(64))
        created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, index=True)
        updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
        finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    class OperationStep(Base):  # type: ignore[valid-type,misc]
        __tablename__ = "operation_steps"

        operation_id: Mapped[str] = mapped_column(
            String(48), ForeignKey("operations.id", ondelete="CASCADE"), primary_key=True
        )
        key: Mapped[str] = mapped_column(String(120), primary_key=True)  # participant:target_type:target_id
        position: Mapped[int] = mapped_column(Integer, default=0)
        participant: Mapped[str] = mapped_column(String(40))
        target_type: Mapped[str] = mapped_column(String(40))
        target_id: Mapped[str] = mapped_column(String(60))
        status: Mapped[str] = mapped_column(String(20), default="pending")
        result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
        error: Mapped[str | None] = mapped_column(String(500))
        finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    return OperationModels(Operation, OperationStep)


def create_operations_tables(op: Any) -> None:
    """The migration of :func:`operation_models` (``op`` is alembic's)."""
    create_tables(
        op,
        """
        table operations
            id                       str(48)   pk
            kind                     str(60)
            status                   str(20)
            owner                    str(100)
            target_type              str(40)
            target_id                str(60)
            steps_total, steps_done  int
            options                  json
            request_id               str(64)   null
            created_at, updated_at   datetime
            finished_at              datetime  null
            pk_operations: primary key (id)
            ix_operations_owner: index (owner)
            ix_operations_target_id: index (target_id)
            ix_operations_created_at: index (created_at)
        table operation_steps
            operation_id             str(48)
            key                      str(120)
            position                 int
            participant              str(40)
            target_type              str(40)
            target_id                str(60)
            status                   str(20)
            result                   json      null
            error                    str(500)  null
            finished_at              datetime  null
            fk_operation_steps_operation_id_operations: foreign key (operation_id) -> operations (id) on delete CASCADE
            pk_operation_steps: primary key (operation_id, key)
        """,
    )


def drop_operations_tables(op: Any) -> None:
    drop_tables(op, "operation_steps operations")


@dataclass(frozen=True)
class Step:
    """A step an operation waits for: ``participant`` does its part for one target record."""

    participant: str
    target_type: str
    target_id: int | str

    @property
    def key(self) -> str:
        return step_key(self.participant, self.target_type, self.target_id)


def step_key(participant: str, target_type: str, target_id: int | str) -> str:
    return f"{participant}:{target_type}:{target_id}"


def start(
    session: Session,
    models: OperationModels,
    *,
    service: str,
    kind: str,
    owner: str,
    target_type: str,
    target_id: int | str,
    steps: list[Step],
    options: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> Any:
    """A new operation waiting for ``steps`` (in the caller's transaction). No step: it has succeeded."""
    now = utcnow()
    operation = models.Operation(
        id=new_operation_id(service),
        kind=kind,
        status="running" if steps else "succeeded",
        owner=owner,
        target_type=target_type,
        target_id=str(target_id),
        steps_total=len(steps),
        steps_done=0,
        options=options or {},
        request_id=request_id,
        created_at=now,
        updated_at=now,
        finished_at=None if steps else now,
    )
    added(session, operation)
    for position, step in enumerate(steps):
        session.add(
            models.OperationStep(
                operation_id=operation.id,
                key=step.key,
                position=position,
                participant=step.participant,
                target_type=step.target_type,
                target_id=str(step.target_id),
                status="pending",
            )
        )
    session.flush()
    return operation


def complete_step(
    session: Session,
    models: OperationModels,
    operation_id: str,
    key: str,
    *,
    result: dict[str, Any] | None = None,
    error: str | None = None,
) -> bool:
    """Records a participant's report of one step; False when it was already recorded (a repeat) or the
    operation or step is unknown. The operation's row is locked, so concurrent reports count once each."""
    operation = session.scalar(select(models.Operation).where(models.Operation.id == operation_id).with_for_update())
    if operation is None:
        return False
    step = session.get(models.OperationStep, (operation_id, key), with_for_update=True)
    if step is None or step.status != "pending":
        return False
    now = utcnow()
    step.status = "failed" if error else "done"
    step.result = result
    step.error = error[:500] if error else None
    step.finished_at = now
    operation.steps_done += 1
    operation.updated_at = now
    if operation.steps_done >= operation.steps_total:
        failed = session.scalar(
            select(func.count())
            .select_from(models.OperationStep)
            .where(models.OperationStep.operation_id == operation_id, models.OperationStep.status == "failed")
        )
        operation.status = "failed" if failed else "succeeded"
        operation.finished_at = now
    session.flush()
    return True


def steps_of(session: Session, models: OperationModels, operation_id: str) -> list[Any]:
    return list(
        session.scalars(
            select(models.OperationStep)
            .where(models.OperationStep.operation_id == operation_id)
            .order_by(models.OperationStep.position)
        )
    )


def present(
    operation: Any,
    steps: list[Any] | None,
    links: dict[str, str] | None = None,
    readable: Callable[[Any], bool] | None = None,
) -> dict[str, Any]:
    """The operation as its owner reads it. ``readable(step)``: whether the caller still holds, now,
    the right the step's result came from; a step it is not keeps its participant, target and status
    but its ``result`` and ``error`` are withheld (null, ``withheld: true``)."""
    body: dict[str, Any] = {
        "id": operation.id,
        "kind": operation.kind,
        "status": operation.status,
        "target": {"type": operation.target_type, "id": operation.target_id},
        "progress": {"done": operation.steps_done, "total": operation.steps_total},
        "options": operation.options or {},
        "created_at": operation.created_at,
        "updated_at": operation.updated_at,
        "finished_at": operation.finished_at,
        "links": {"self": f"/api/v1/operations/{operation.id}", **(links or {})},
    }
    if steps is not None:
        shown = [readable is None or readable(s) for s in steps]
        body["steps"] = [
            {
                "participant": s.participant,
                "target": {"type": s.target_type, "id": s.target_id},
                "status": s.status,
                "result": s.result if show else None,
                "error": s.error if show else None,
                "withheld": not show,
                "finished_at": s.finished_at,
            }
            for s, show in zip(steps, shown, strict=True)
        ]
    return body


# --- the HTTP resource --------------------------------------------------------------------------------


class When(Timestamp):
    """A moment, written ``2026-11-22T14:03:00Z``; one already written (the gateway merging the services'
    lists) passes as it is."""

    def _serialize(self, value: Any, attr: str | None, obj: Any, **kwargs: Any) -> str | None:
        if isinstance(value, str):
            return value
        return super()._serialize(value, attr, obj, **kwargs)


class TargetSchema(Schema):
    type = fields.String(metadata={"description": "customer, import, export…"})
    id = fields.String()


class ProgressSchema(Schema):
    done = fields.Integer(metadata={"description": "Steps finished (done or failed)"})
    total = fields.Integer()


class StepSchema(Schema):
    participant = fields.String(metadata={"description": "The service that does this step"})
    target = fields.Nested(TargetSchema)
    status = fields.String(metadata={"enum": list(STEP_STATUSES)})
    result = fields.Dict(
        allow_none=True, metadata={"description": "What the step changed: item ids, counts, links to them"}
    )
    error = fields.String(allow_none=True)
    withheld = fields.Boolean(
        metadata={
            "description": "True when `result` and `error` are withheld (null): you no longer hold, at the "
            "step's record, the right the operation ran under (it was moved to another office, or your "
            "rights there changed). Status and progress stay shown."
        }
    )
    finished_at = When(allow_none=True)


class OperationSchema(Schema):
    id = fields.String(metadata={"example": "customer-7f0c2e9b5d8a4f7e9c3b1a2d4e6f8a0b"})
    kind = fields.String(metadata={"example": "customer.archive"})
    status = fields.String(metadata={"enum": list(STATUSES)})
    target = fields.Nested(TargetSchema)
    progress = fields.Nested(ProgressSchema)
    options = fields.Dict()
    created_at = When()
    updated_at = When()
    finished_at = When(allow_none=True)
    links = fields.Dict(keys=fields.String(), values=fields.String())
    steps = fields.List(fields.Nested(StepSchema), metadata={"description": "Per item results (single reads only)"})


class OperationPageSchema(Schema):
    items = fields.List(fields.Nested(OperationSchema))
    page = fields.Integer()
    per_page = fields.Integer()
    total = fields.Integer()


class OperationListArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=100))
    status = fields.String(validate=validate.OneOf(STATUSES))
    kind = fields.String(validate=validate.Length(max=60))


def operations_blueprint(models: OperationModels, links: Any = None, readable: Any = None) -> Blueprint:
    """``GET /api/v1/operations`` and ``/operations/{id}`` of one service: the caller's own only
    (another caller's operation answers 404). ``links(operation)`` adds links to what it changed.
    ``readable(session, identity, operation, steps)`` answers, at read time, which steps' results the
    caller may still read (a predicate on a step, see :func:`present`): the rights the operation ran
    under may have been lost since, and a result names records (appointments, invoices) the caller
    may no longer see. Without it every step is shown."""
    from .authz import current_identity, requires
    from .permissions import AUTHENTICATED
    from .service import request_session

    blp = Blueprint("operations", __name__, url_prefix="/api/v1/operations", description="Long-running operations")

    def links_of(operation: Any) -> dict[str, str]:
        return links(operation) if links is not None else {}

    @blp.route("")
    class Operations(MethodView):
        @requires(AUTHENTICATED)
        @blp.arguments(OperationListArgs, location="query", as_kwargs=True)
        @blp.response(200, OperationPageSchema)
        def get(self, page: int, per_page: int, status: str | None = None, kind: str | None = None) -> Any:
            """The operations you started, newest first (filter by `status` and `kind`)."""
            Operation = models.Operation
            statement = select(Operation).where(Operation.owner == current_identity().subject)
            if status:
                statement = statement.where(Operation.status == status)
            if kind:
                statement = statement.where(Operation.kind == kind)
            statement = statement.order_by(Operation.created_at.desc(), Operation.id)
            result = paginate(request_session(), statement, page, per_page)
            return result.answer(lambda operation: present(operation, None, links_of(operation)))

    @blp.route("/<string:operation_id>")
    class OperationItem(MethodView):
        @requires(AUTHENTICATED)
        @answers(blp, 200, OperationSchema, not_found="No such operation, or it is not yours")
        def get(self, operation_id: str) -> Any:
            """One of your operations: status, progress, and each step's result or error.

            A step's `result` and `error` are shown only while you still hold, at the step's record,
            the right the operation ran under (`customers.archive` for an archive, `customers.unarchive`
            for an unarchive), checked when you read it: after the record moved to an office where you
            lack it, or the right was taken from you, the step answers `withheld: true` with both null.
            The operation's status and progress stay shown to you, who started it."""
            session = request_session()
            identity = current_identity()
            operation = session.get(models.Operation, operation_id) if ID_PATTERN.match(operation_id) else None
            if operation is None or operation.owner != identity.subject:
                raise not_found("operation")
            steps = steps_of(session, models, operation.id)
            shown = readable(session, identity, operation, steps) if readable is not None else None
            return present(operation, steps, links_of(operation), shown)

    return blp
