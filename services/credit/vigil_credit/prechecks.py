"""ADT PreChecks: requested at customer create (from ``customer.created``) or refreshed by a user,
run by the worker against the ADT adapter between two short transactions, like a credit pull."""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.crypto import FieldCipher
from vigil_shared.customer_replica import CREDIT_SUBJECT_FIELDS
from vigil_shared.db import added, utcnow
from vigil_shared.messaging.contracts import PreCheckRequested
from vigil_shared.messaging.outbox import Outbox

from .adt import PreCheckAnswer
from .models import PreCheck, begin_attempt, settle
from .schemas import PreCheckSchema

ADT_FIELDS = CREDIT_SUBJECT_FIELDS  # what ADT needs of the customer: the credit subject carries it all


# a change to any of these re-runs the PreCheck when the company setting says so
RERUN_FIELDS = frozenset({"primary_phone", "address_line1", "address_line2", "city", "state", "zip", "county", "ssn"})


def request(session: Session, outbox: Outbox, customer_id: int, trigger: str, by: str | None) -> PreCheck:
    """A pending PreCheck and the event that starts it (same transaction)."""
    precheck = PreCheck(
        customer_id=customer_id, status="pending", trigger=trigger, reasons=[], attempts=0, requested_by_name=by
    )
    added(session, precheck)
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
    """The pre-check as :class:`~vigil_credit.schemas.PreCheckSchema` shows it."""
    shown = (name for name in PreCheckSchema._declared_fields if name != "reasons")
    return {name: getattr(precheck, name) for name in shown} | {"reasons": list(precheck.reasons or [])}


def start(session: Session, precheck_id: int) -> PreCheck | None:
    precheck = begin_attempt(session, PreCheck, precheck_id)
    if precheck is not None:
        precheck.started_at = utcnow()
        session.flush()
    return precheck


def finish(session: Session, cipher: FieldCipher, precheck_id: int, answer: PreCheckAnswer) -> PreCheck | None:
    return settle(
        session,
        PreCheck,
        precheck_id,
        lambda: {
            "status": answer.status,
            "reference": answer.reference,
            "reasons": list(answer.reasons),
            "response_enc": cipher.encrypt(json.dumps(answer.raw)),
            "completed_at": utcnow(),
        },
    )


def fail(session: Session, precheck_id: int, reason: str) -> PreCheck | None:
    return settle(
        session, PreCheck, precheck_id, lambda: {"status": "error", "error": reason[:500], "completed_at": utcnow()}
    )
