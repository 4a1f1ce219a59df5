"""Tables the credit service owns. No other service reads them.

Customers live in the customer service and are referred to by id; the SSN and birthdate a pull
needs are fetched from it at pull time and never stored here. What the bureau answered is kept
whole, encrypted (``response_enc``); the score, grade and transaction id are kept in clear for the
Credit tab.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Boolean, Index, Integer, String, Text, false
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from vigil_shared.db import ServiceTables, UTCDateTime, Versioned, service_metadata, utcnow
from vigil_shared.messaging.outbox import messaging_models


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


messaging = messaging_models(Base)

BUREAUS = ("equifax", "experian", "transunion")
# pending → running → complete | no_hit | frozen | failed; ``manual`` for an entered score
STATUSES = ("pending", "running", "complete", "no_hit", "frozen", "failed", "manual")
FINISHED = frozenset({"complete", "no_hit", "frozen", "failed", "manual"})
# a pull that reached the bureau (a hard inquiry on the subject's file), for the repeat rule
INQUIRIES = ("pending", "running", "complete", "no_hit", "frozen")


class CreditCheck(Versioned, Base):
    __tablename__ = "credit_checks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, nullable=False)
    bureau: Mapped[str | None] = mapped_column(String(20))  # None for a manual score
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    # the bureau's own extra fields and the previous address, encrypted (a subject PIN is confidential)
    request_enc: Mapped[str | None] = mapped_column(Text)
    score: Mapped[int | None] = mapped_column(Integer)
    grade: Mapped[str | None] = mapped_column(String(10))
    transaction_id: Mapped[str | None] = mapped_column(String(100))
    reason: Mapped[str | None] = mapped_column(String(500))  # why it failed, no hit or frozen
    response_enc: Mapped[str | None] = mapped_column(Text)  # the bureau's answer, encrypted
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    requested_by: Mapped[str | None] = mapped_column(String(100))
    requested_by_name: Mapped[str | None] = mapped_column(String(150))
    request_id: Mapped[str | None] = mapped_column(String(64))
    applied: Mapped[bool] = mapped_column(Boolean, nullable=False, default=False, server_default=false())
    applied_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    applied_by: Mapped[str | None] = mapped_column(String(150))
    skipped_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    run_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # when the bureau answered

    __table_args__ = (Index("ix_credit_checks_customer", "customer_id", "bureau", "created_at"),)


class CreditSettings(Versioned, Base):
    """The company's credit settings: one row (id 1), created with the defaults when first read."""

    __tablename__ = "credit_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    repeat_days: Mapped[int] = mapped_column(Integer, nullable=False)
    # [{"grade": "A", "min_score": 700}, …], highest first; a score below every band has no grade
    grade_bands: Mapped[list] = mapped_column(JSON, nullable=False)
    # run the ADT PreCheck again when a customer who had one changes phone, address or SSN
    precheck_rerun_on_change: Mapped[bool] = mapped_column(
        Boolean, nullable=False, default=False, server_default=false()
    )


PRECHECK_STATUSES = ("pending", "running", "approved", "declined", "manual_review", "error")
PRECHECK_FINISHED = frozenset({"approved", "declined", "manual_review", "error"})


class PreCheck(Base):
    """One ADT PreCheck of a customer (at create, or a refresh); the latest is the customer's status."""

    __tablename__ = "prechecks"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, nullable=False, index=True)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    trigger: Mapped[str] = mapped_column(String(20), nullable=False)  # create or refresh
    reference: Mapped[str | None] = mapped_column(String(100))
    reasons: Mapped[list] = mapped_column(JSON, nullable=False, default=list)
    error: Mapped[str | None] = mapped_column(String(500))
    response_enc: Mapped[str | None] = mapped_column(Text)  # ADT's answer, encrypted
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
    requested_by_name: Mapped[str | None] = mapped_column(String(150))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), nullable=False, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())  # when a worker last began to run it
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class OutboundSlot(Base):
    """One of the ``cap`` slots of calls to an outside system (``slots.SharedSlots``): taken while a
    worker's call is in flight, with a lease that frees it if that worker dies."""

    __tablename__ = "outbound_slots"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)  # adt, bureau
    slot: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    holder: Mapped[str | None] = mapped_column(String(100))
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


Job = TypeVar("Job", CreditCheck, PreCheck)
_FINISHED_OF: dict[type, frozenset[str]] = {CreditCheck: FINISHED, PreCheck: PRECHECK_FINISHED}


def unfinished(session: Session, model: type[Job], job_id: int) -> Job | None:
    """The credit check or pre-check, row-locked, while it has no answer yet (None when gone or answered)."""
    job = session.get(model, job_id, with_for_update=True)
    return None if job is None or job.status in _FINISHED_OF[model] else job


def begin_attempt(session: Session, model: type[Job], job_id: int) -> Job | None:
    """The job to run now (marked running, one more attempt), or None when it has its answer already."""
    job = unfinished(session, model, job_id)
    if job is not None:
        job.status = "running"
        job.attempts += 1
        session.flush()
    return job


def settle(session: Session, model: type[Job], job_id: int, answer: Callable[[], dict[str, Any]]) -> Job | None:
    """Records ``answer()`` (column values) on the job while it has none yet; None when gone or answered."""
    job = unfinished(session, model, job_id)
    if job is not None:
        for name, value in answer().items():
            setattr(job, name, value)
        session.flush()
    return job
