"""Archiving and unarchiving customers: the customer service's side of the archive saga.

The customer service orchestrates (docs/archive.md). In one transaction it archives the customer
and its unarchived sub-customers (or unarchives them), starts an operation with one step per
participant service and customer, records its own steps as done, and writes the event every
participant acts on. The participants report their steps back with ``operation.step_done``
(:func:`step_reported`), and the operation finishes when the last one is in. Nothing here waits
for another service, so a crash anywhere leaves either nothing or a complete, resumable saga.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared import operations as ops
from vigil_shared.archived import parent_archived_problem
from vigil_shared.db import utcnow
from vigil_shared.errors import conflict
from vigil_shared.identity import Identity
from vigil_shared.messaging.contracts import (
    ARCHIVE_PARTICIPANTS,
    CustomerArchiveRequested,
    CustomerUnarchiveRequested,
    OperationStepDone,
)

from . import history
from .access import CUSTOMER, section_view_permission
from .customers import Context
from .models import Customer, operations

SERVICE = "customer"
ARCHIVE = "customer.archive"
UNARCHIVE = "customer.unarchive"
Scope = Literal["parent", "parent_and_children"]


def name_of(customer: Customer) -> str:
    name = " ".join(part for part in (customer.first_name, customer.last_name) if part)
    return customer.business_name or name or f"Customer {customer.id}"


def sub_customers(
    session: Session, parent_id: int, *, archived: bool | None = None, lock: bool = False
) -> list[Customer]:
    """The customer's sub-customers, by id (``archived``: only those archived or not)."""
    statement = select(Customer).where(Customer.parent_customer_id == parent_id, Customer.kind == "customer")
    if archived is True:
        statement = statement.where(Customer.archived_at.is_not(None))
    elif archived is False:
        statement = statement.where(Customer.archived_at.is_(None))
    statement = statement.order_by(Customer.id)
    if lock:
        statement = statement.with_for_update()
    return list(session.scalars(statement))


def preview(ctx: Context, customer: Customer) -> dict[str, Any]:
    """The customer service's part of the archive preview: who would be archived (403, as archiving
    would be, when a sub-customer is where the caller may not archive: its name is not shown)."""
    _ensure_archivable(customer)
    subs = sub_customers(ctx.session, customer.id, archived=False)
    for sub in subs:
        ctx.require("customers.archive", sub.location_id)
    return {
        "customer": {"id": customer.id, "name": name_of(customer)},
        "sub_customers": [{"id": s.id, "name": name_of(s)} for s in subs],
    }


def _ensure_archivable(customer: Customer) -> None:
    if customer.kind != "customer":
        raise conflict("Only customers can be archived, not leads.")
    if customer.archived_at is not None:
        raise conflict(f"Customer {customer.id} is already archived.")


def _steps(customer_ids: list[int]) -> list[ops.Step]:
    return [
        ops.Step(participant, "customer", customer_id)
        for participant in (SERVICE, *ARCHIVE_PARTICIPANTS)
        for customer_id in customer_ids
    ]


def _start(ctx: Context, kind: str, customer: Customer, targets: list[Customer], options: dict[str, Any]) -> Any:
    ids = [c.id for c in targets]
    return ops.start(
        ctx.session,
        operations,
        service=SERVICE,
        kind=kind,
        owner=ctx.identity.subject,
        target_type="customer",
        target_id=customer.id,
        steps=_steps(ids),
        options={"customer_ids": ids, **options},
        request_id=ctx.request_id,
    )


def archive(ctx: Context, customer: Customer) -> Any:
    """Archives the customer and its unarchived sub-customers; returns the operation that finishes it."""
    _ensure_archivable(customer)
    subs = sub_customers(ctx.session, customer.id, archived=False, lock=True)
    for sub in subs:
        ctx.require("customers.archive", sub.location_id)
    targets = [customer, *subs]
    operation = _start(ctx, ARCHIVE, customer, targets, {})
    now = utcnow()
    for target in targets:
        target.archived_at = now
        target.archive_operation_id = operation.id
        history.record(ctx.session, ctx.actor, target.id, "customer.archived", field="archived_at", new=now)
    ctx.session.flush()
    ctx.outbox.add(
        ctx.session, CustomerArchiveRequested(operation_id=operation.id, customer_ids=[t.id for t in targets])
    )
    for target in targets:
        result = {"archived": [{"type": "customer", "id": target.id, "link": f"/api/v1/customers/{target.id}"}]}
        ops.complete_step(
            ctx.session, operations, operation.id, ops.step_key(SERVICE, "customer", target.id), result=result
        )
    return operation


def unarchive(ctx: Context, customer: Customer, scope: Scope, restore_cancelled: bool) -> Any:
    """Unarchives the customer (and, with ``parent_and_children``, its archived sub-customers)."""
    if customer.archived_at is None:
        raise conflict(f"Customer {customer.id} is not archived.")
    if customer.parent_customer_id is not None:
        parent = ctx.session.get(Customer, customer.parent_customer_id)
        if parent is not None and parent.archived_at is not None:
            identity = ctx.identity
            link = section_view_permission("parent_customer_id", CUSTOMER) or "customers.view"
            # the parent is named only to who may view it and see the link (a sale-information field)
            named = identity.can("customers.view", parent.location_id) and identity.can(link, customer.location_id)
            raise parent_archived_problem(customer.id, parent.id if named else None)
    subs = sub_customers(ctx.session, customer.id, archived=True, lock=True) if scope == "parent_and_children" else []
    for sub in subs:
        ctx.require("customers.unarchive", sub.location_id)
    targets = [customer, *subs]
    archive_operations = sorted({t.archive_operation_id for t in targets if t.archive_operation_id})
    operation = _start(ctx, UNARCHIVE, customer, targets, {"scope": scope, "restore_cancelled": restore_cancelled})
    for target in targets:
        history.record(
            ctx.session, ctx.actor, target.id, "customer.unarchived", field="archived_at", old=target.archived_at
        )
        target.archived_at = None
        target.archive_operation_id = None
    ctx.session.flush()
    ctx.outbox.add(
        ctx.session,
        CustomerUnarchiveRequested(
            operation_id=operation.id,
            customer_ids=[t.id for t in targets],
            restore_cancelled=restore_cancelled,
            archive_operation_ids=archive_operations,
        ),
    )
    for target in targets:
        result = {"unarchived": [{"type": "customer", "id": target.id, "link": f"/api/v1/customers/{target.id}"}]}
        ops.complete_step(
            ctx.session, operations, operation.id, ops.step_key(SERVICE, "customer", target.id), result=result
        )
    return operation


def step_reported(session: Session, report: OperationStepDone) -> bool:
    """A participant's report of one step (a repeat, or another service's operation, changes nothing)."""
    if ops.owner_of(report.operation_id) != SERVICE:
        return False
    return ops.complete_step(
        session,
        operations,
        report.operation_id,
        ops.step_key(report.participant, report.target_type, report.target_id),
        result=report.result,
        error=(report.error or "failed") if report.status == "failed" else None,
    )


# the right each kind of operation ran under, at every record it acted on (checked again when it is read)
OPERATION_PERMISSIONS = {ARCHIVE: "customers.archive", UNARCHIVE: "customers.unarchive"}


def readable_steps(session: Session, identity: Identity, operation: Any, steps: list[Any]) -> Callable[[Any], bool]:
    """Which steps' results the operation's owner may read now: those on a customer where they still hold
    the right the operation ran under (:data:`OPERATION_PERMISSIONS`), at its current location. A step's
    result names what was cancelled or restored (appointments, invoices, payments): after the record
    moved to an office where the caller lacks that right, or the right was taken from them, it is
    withheld. A kind of operation not listed, or a record gone since, shows no result."""
    permission = OPERATION_PERMISSIONS.get(operation.kind)
    ids = {int(s.target_id) for s in steps if s.target_type == "customer" and s.target_id.isdigit()}
    if permission is None or not ids:
        return lambda step: False
    located: dict[int, int | None] = dict(
        session.execute(select(Customer.id, Customer.location_id).where(Customer.id.in_(ids))).all()
    )
    allowed = {customer_id for customer_id, location in located.items() if identity.can(permission, location)}

    def readable(step: Any) -> bool:
        return step.target_type == "customer" and step.target_id.isdigit() and int(step.target_id) in allowed

    return readable


def operation_links(operation: Any) -> dict[str, str]:
    if operation.target_type == "customer":
        return {"customer": f"/api/v1/customers/{operation.target_id}"}
    return {}
