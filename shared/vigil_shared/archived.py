"""Archived customers are read-only in every service: the one refusal every service answers.

A service that holds records under a customer (the customer itself, its notes, contacts, files,
tags; properties, systems, appointments; billing…) calls :func:`refuse_if_archived` in the loader
every write goes through (never per route), with what it knows of the customer's state: the
customer service from its own row, the others from their replica, which the archive saga's events
keep current (``customer.archive_requested`` / ``customer.unarchive_requested``).
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields, validate
from sqlalchemy.orm import Session

from .errors import Problem
from .messaging.contracts import OperationStepDone
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


def parent_archived_problem(customer_id: int, parent_id: int) -> Problem:
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
