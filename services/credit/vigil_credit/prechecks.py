"""ADT PreChecks: requested at customer create (from ``customer.created``) or refreshed by a user,
run by the worker against the ADT adapter between two short transactions, like a credit pull."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.crypto import FieldCipher
from vigil_shared.db import utcnow
from vigil_shared.messaging.contracts import PreCheckRequested
from vigil_shared.messaging.outbox import Outbox

from .adt import PreCheckAnswer
from .models import PRECHECK_FINISHED, PreCheck

# what ADT needs of the customer (the credit-subject read of the customer service carries them)
ADT_FIELDS = (
    "first_name",
    "last_name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "zip",
    "county",
    "email",
    "primary_phone",
    "account_type",
    "business_name",
    "business_contact",
    "dealer_number",
    "ssn",
    "birthdate",
)


# a change to any of these re-runs the PreCheck when the company setting says so
RERUN_FIELDS = frozenset({"primary_phone", "address_line1", "address_line2", "city", "state", "zip", "county", "ssn"})


def request(session: Session, outbox: Outbox, customer_id: int, trigger: str, by: str | None) -> PreCheck:
    """A pending PreCheck and the event that starts it (same transaction)."""
    precheck = PreCheck(
        customer_id=customer_id, status="pending", trigger=trigger, reasons=[], attempts=0, requested_by_name=by
    )
    session.add(precheck)
    session.flush()
    outbox.add(session, PreCheckRequested(precheck_id=precheck.id, customer_id=customer_id))
    return precheck


def history(session: Session, customer_id: int) -> list[PreCheck]:
    return list(
        session.scalars(select(PreCheck).where(PreCheck.customer_id == customer_id).order_by(PreCheck.id.desc()))
    )


def latest_status(session: Session, customer_id: int) -> str | None:
    return session.scalar(
        select(PreCheck.status).where(PreCheck.customer_id == customer_id).order_by(PreCheck.id.desc()).limit(1)
    )


def present(precheck: PreCheck) -> dict[str, Any]:
    return {
        "id": precheck.id,
        "customer_id": precheck.customer_id,
        "status": precheck.status,
        "trigger": precheck.trigger,
        "reference": precheck.reference,
        "reasons": list(precheck.reasons or []),
        "error": precheck.error,
        "attempts": precheck.attempts,
        "requested_by_name": precheck.requested_by_name,
        "created_at": precheck.created_at,
        "completed_at": precheck.completed_at,
    }


def start(session: Session, precheck_id: int) -> PreCheck | None:
    precheck = session.get(PreCheck, precheck_id, with_for_update=True)
    if precheck is None or precheck.status in PRECHECK_FINISHED:
        return None
    precheck.status = "running"
    precheck.attempts += 1
    precheck.started_at = utcnow()
    session.flush()
    return precheck


def finish(session: Session, cipher: FieldCipher, precheck_id: int, answer: PreCheckAnswer) -> PreCheck | None:
    precheck = session.get(PreCheck, precheck_id, with_for_update=True)
    if precheck is None or precheck.status in PRECHECK_FINISHED:
        return None
    precheck.status = answer.status
    precheck.reference = answer.reference
    precheck.reasons = list(answer.reasons)
    precheck.response_enc = cipher.encrypt(json.dumps(answer.raw))
    precheck.completed_at = utcnow()
    session.flush()
    return precheck


def fail(session: Session, precheck_id: int, reason: str) -> PreCheck | None:
    precheck = session.get(PreCheck, precheck_id, with_for_update=True)
    if precheck is None or precheck.status in PRECHECK_FINISHED:
        return None
    precheck.status = "error"
    precheck.error = reason[:500]
    precheck.completed_at = utcnow()
    session.flush()
    return precheck
