"""Archived customers are read-only in every service: the one refusal every service answers.

A service that holds records under a customer (the customer itself, its notes, contacts, files,
tags; properties, systems, appointments; billing…) calls :func:`refuse_if_archived` in the loader
every write goes through (never per route), with what it knows of the customer's state: the
customer service from its own row, the others from their replica, which the archive saga's events
keep current (``customer.archive_requested`` / ``customer.unarchive_requested``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from .errors import Problem
from .messaging.contracts import CustomerArchiveRequested, CustomerUnarchiveRequested, OperationStepDone
from .messaging.outbox import Outbox

ARCHIVED = "urn:vigil:problem:customer-archived"
ARCHIVED_PARENT = "urn:vigil:problem:parent-archived"


def unarchive_path(customer_id: int) -> str:
    return f"/api/v1/customers/{customer_id}/unarchive"


def archived_problem(customer_id: int) -> Problem:
    """409: the customer is archived, with how to make it writable again."""
    return Problem(
        409,
        f"Customer {customer_id} is archived, so it and everything under it are read-only. "
        f"To change it, unarchive it first (POST {unarchive_path(customer_id)}, "
        "which needs the customers.unarchive permission).",
        type=ARCHIVED,
        title="The customer is archived",
        customer_id=customer_id,
        unarchive=unarchive_path(customer_id),
    )


def refuse_if_archived(archived: bool, customer_id: int) -> None:
    if archived:
        raise archived_problem(customer_id)


def parent_archived_problem(customer_id: int, parent_id: int | None) -> Problem:
    """409: the sub-customer's parent is still archived. ``parent_id``: None for a caller who may not see
    the parent (its office, or the link, a sale-information field): the refusal then names no parent."""
    if parent_id is None:
        return Problem(
            409,
            f"Customer {customer_id} is a sub-customer whose parent customer is still archived. "
            "The parent must be unarchived first, by someone who may see it.",
            type=ARCHIVED_PARENT,
            title="The parent customer is archived",
            customer_id=customer_id,
        )
    return Problem(
        409,
        f"Customer {customer_id} is a sub-customer of customer {parent_id}, which is still archived. "
        f"Unarchive the parent first (POST {unarchive_path(parent_id)}).",
        type=ARCHIVED_PARENT,
        title="The parent customer is archived",
        customer_id=customer_id,
        parent_customer_id=parent_id,
        unarchive=unarchive_path(parent_id),
    )


# --- what every archive participant shares (docs/archive.md) -------------------------------------------


class ArchiveItemsArgs(Schema):
    """The query of a participant's ``GET /api/v1/archive-items/<service>`` (the gateway's preview asks it)."""

    customer_id = fields.List(
        fields.Integer(validate=validate.Range(min=1, max=2**31 - 1)),
        load_default=list,
        validate=validate.Length(max=500),
        metadata={"description": "The customers to be archived (none: nothing is listed)"},
    )


def report_customer_step(
    session: Session, outbox: Outbox, participant: str, operation_id: str, customer_id: int, result: dict[str, Any]
) -> None:
    """A participant's report of its step for one customer, in the transaction that made the step's effect."""
    outbox.add(
        session,
        OperationStepDone(
            operation_id=operation_id,
            participant=participant,
            target_type="customer",
            target_id=str(customer_id),
            result=result,
        ),
    )


ItemsByCustomer = dict[int, list[dict[str, Any]]]
# a participant's replica setter: (session, customer_id, archived, as_of)
MarkArchived = Callable[[Session, int, bool, datetime], None]


def items_by_customer(customer_ids: Iterable[int]) -> ItemsByCustomer:
    """An empty list of items per customer of an archive request, filled as the participant's step runs."""
    return {customer_id: [] for customer_id in customer_ids}


def report_archive_step(
    session: Session,
    outbox: Outbox,
    participant: str,
    request: CustomerArchiveRequested,
    mark_archived: MarkArchived,
    as_of: datetime,
    cancelled: ItemsByCustomer,
) -> None:
    """Ends a participant's archive step: each customer read-only in its replica, and its report of what
    archiving cancelled, in the transaction that cancelled it."""
    for customer_id in request.customer_ids:
        mark_archived(session, customer_id, True, as_of)
        result = {"cancelled": cancelled[customer_id]}
        report_customer_step(session, outbox, participant, request.operation_id, customer_id, result)


def report_unarchive_step(
    session: Session,
    outbox: Outbox,
    participant: str,
    request: CustomerUnarchiveRequested,
    mark_archived: MarkArchived,
    as_of: datetime,
    restored: ItemsByCustomer,
    skipped: ItemsByCustomer,
) -> None:
    """Ends a participant's unarchive step: each customer writable again in its replica, and its report of
    what was restored and what was not (with the reason)."""
    for customer_id in request.customer_ids:
        mark_archived(session, customer_id, False, as_of)
        result: dict[str, Any] = {"restored": restored[customer_id]}
        if skipped[customer_id]:
            result["not_restored"] = skipped[customer_id]
        report_customer_step(session, outbox, participant, request.operation_id, customer_id, result)
