"""Credit checks: requesting a pull, recording what the bureau said, manual scores, apply and skip.

No HTTP and no commit in here: the commands own the transaction; the pull itself (long, external)
runs in the worker (:mod:`vigil_credit.tasks`) between two short transactions of this module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from vigil_shared.commands import Context
from vigil_shared.crypto import FieldCipher
from vigil_shared.db import added, utcnow
from vigil_shared.errors import CONFLICT, Problem, conflict, not_found, validation_problem
from vigil_shared.messaging.contracts import CreditCheckApplied, CreditCheckRequested

from .bureau import BureauAnswer
from .models import FINISHED, INQUIRIES, CreditCheck, CreditSettings, PreCheck, begin_attempt, settle

DEFAULT_REPEAT_DAYS = 30
DEFAULT_GRADE_BANDS = [
    {"grade": "A", "min_score": 700},
    {"grade": "B", "min_score": 650},
    {"grade": "C", "min_score": 600},
    {"grade": "D", "min_score": 550},
    {"grade": "F", "min_score": 300},
]
REPEAT = "urn:vigil:problem:credit-repeat"


@dataclass(frozen=True)
class CustomerRef:
    """A customer as the credit service knows it at request time: its id, office location and whether
    it is archived (its credit is then read-only)."""

    customer_id: int
    location_id: int | None
    archived: bool = False


# --- company settings ---------------------------------------------------------------------------


def get_settings(session: Session) -> CreditSettings:
    settings = session.get(CreditSettings, 1)
    if settings is None:
        settings = CreditSettings(
            id=1, repeat_days=DEFAULT_REPEAT_DAYS, grade_bands=DEFAULT_GRADE_BANDS, precheck_rerun_on_change=False
        )
        added(session, settings)
    return settings


def update_settings(session: Session, changes: dict[str, Any]) -> CreditSettings:
    settings = get_settings(session)
    if "grade_bands" in changes:
        bands = sorted(changes["grade_bands"], key=lambda band: -band["min_score"])
        if len({band["grade"] for band in bands}) != len(bands) or len({b["min_score"] for b in bands}) != len(bands):
            raise validation_problem({"grade_bands": ["Each grade and each minimum score may appear once."]})
        settings.grade_bands = bands
    if "repeat_days" in changes:
        settings.repeat_days = changes["repeat_days"]
    if "precheck_rerun_on_change" in changes:
        settings.precheck_rerun_on_change = changes["precheck_rerun_on_change"]
    session.flush()
    return settings


def grade_for(settings: CreditSettings, score: int | None) -> str | None:
    if score is None:
        return None
    for band in sorted(settings.grade_bands, key=lambda b: -b["min_score"]):
        if score >= band["min_score"]:
            return str(band["grade"])
    return None


# --- reading ------------------------------------------------------------------------------------


def get_check(session: Session, check_id: int, *, for_update: bool = False) -> CreditCheck:
    check = session.get(
        CreditCheck, check_id, with_for_update=True if for_update else None, populate_existing=for_update
    )
    if check is None:
        raise not_found("credit check")
    return check


def checks_of(customer_id: int):
    return select(CreditCheck).where(CreditCheck.customer_id == customer_id).order_by(CreditCheck.id.desc())


def request_view(check: CreditCheck, cipher: FieldCipher) -> dict[str, Any]:
    return json.loads(cipher.decrypt(check.request_enc)) if check.request_enc else {}


# --- writing ------------------------------------------------------------------------------------


def request_pull(ctx: Context, customer: CustomerRef, data: dict[str, Any]) -> CreditCheck:
    """A new pending check and the event that starts its pull; 409 for a repeat within the company's
    days unless ``confirm_repeat`` (each pull is a hard inquiry)."""
    session = ctx.session
    settings = get_settings(session)
    bureau = data["bureau"]
    since = utcnow() - timedelta(days=settings.repeat_days)
    previous = session.scalar(
        select(CreditCheck)
        .where(
            CreditCheck.customer_id == customer.customer_id,
            CreditCheck.bureau == bureau,
            CreditCheck.status.in_(INQUIRIES),
            CreditCheck.created_at >= since,
        )
        .order_by(CreditCheck.id.desc())
        .limit(1)
    )
    if previous is not None and not data.get("confirm_repeat"):
        if not ctx.can("credit.view", customer.location_id):  # which check, and when, is the Credit tab's
            raise Problem(
                409,
                f"This customer's {bureau} file was pulled within the last {settings.repeat_days} days; another "
                "pull is a second hard inquiry. Send confirm_repeat: true to pull again anyway.",
                type=REPEAT,
                errors={"confirm_repeat": ["Confirm the repeat pull."]},
            )
        raise Problem(
            409,
            f"This customer's {bureau} file was pulled on {previous.created_at:%Y-%m-%d} (check {previous.id}); "
            f"another pull within {settings.repeat_days} days is a second hard inquiry. "
            "Send confirm_repeat: true to pull again anyway.",
            type=REPEAT,
            previous_check_id=previous.id,
            errors={"confirm_repeat": ["Confirm the repeat pull."]},
        )
    extra = {"options": data.get("options") or {}, "previous_address": data.get("previous_address")}
    check = CreditCheck(
        customer_id=customer.customer_id,
        bureau=bureau,
        status="pending",
        request_enc=ctx.cipher.encrypt(json.dumps(extra)),
        attempts=0,
        requested_by=ctx.identity.subject,
        requested_by_name=ctx.identity.username,
        request_id=ctx.request_id,
    )
    added(session, check)
    ctx.outbox.add(session, CreditCheckRequested(check_id=check.id, customer_id=customer.customer_id))
    return check


def record_manual(ctx: Context, customer: CustomerRef, data: dict[str, Any]) -> CreditCheck:
    settings = get_settings(ctx.session)
    check = CreditCheck(
        customer_id=customer.customer_id,
        bureau=None,
        status="manual",
        score=data["score"],
        grade=grade_for(settings, data["score"]),
        transaction_id=data.get("tracking_number"),
        attempts=0,
        requested_by=ctx.identity.subject,
        requested_by_name=ctx.identity.username,
        request_id=ctx.request_id,
        run_at=utcnow(),
    )
    return added(ctx.session, check)


def apply(ctx: Context, check: CreditCheck, *, shows_result: bool = True) -> CreditCheck:
    """Makes ``check`` the customer's active one; the customer service sets its score on the event.

    ``shows_result``: whether the caller may read the check's result (``credit.view``); a refusal names
    its outcome (no hit, frozen, failed…) only then."""
    if check.status not in ("complete", "manual") or check.score is None:
        if not shows_result:
            raise conflict("The check has no score to apply (it is still running, or had no score).")
        raise conflict(f"A {check.status} check has no score to apply.", errors={"status": [check.status]})
    if check.applied:
        return check  # applying twice changes nothing
    ctx.session.execute(
        update(CreditCheck)
        .where(CreditCheck.customer_id == check.customer_id, CreditCheck.id != check.id, CreditCheck.applied)
        .values(applied=False, version=CreditCheck.version + 1)
        .execution_options(synchronize_session=False)
    )
    check.applied = True
    check.applied_at = utcnow()
    check.applied_by = ctx.identity.username
    check.skipped_at = None
    ctx.session.flush()
    ctx.outbox.add(
        ctx.session,
        CreditCheckApplied(
            check_id=check.id,
            customer_id=check.customer_id,
            score=check.score,
            tracking_number=check.transaction_id,
            actor_id=ctx.identity.subject,
            actor_name=ctx.identity.username,
            source=ctx.source,
        ),
    )
    return check


def skip(ctx: Context, check: CreditCheck) -> CreditCheck:
    """Leaves the check on the Credit tab, not applied (it can still be applied later)."""
    if check.status not in FINISHED:
        raise Problem(409, "The check is still running; skip it once it has an answer.", type=CONFLICT)
    if check.applied:
        raise conflict("The check is applied to the customer; apply another one instead.")
    check.skipped_at = utcnow()
    ctx.session.flush()
    return check


# --- the pull, in the worker ----------------------------------------------------------------------


def start_pull(session: Session, check_id: int) -> CreditCheck | None:
    """The check to pull now (marked running, one more attempt), or None when it has its answer already."""
    return begin_attempt(session, CreditCheck, check_id)


def finish_pull(session: Session, cipher: FieldCipher, check_id: int, answer: BureauAnswer) -> CreditCheck | None:
    return settle(
        session,
        CreditCheck,
        check_id,
        lambda: {
            "status": answer.status,
            "score": answer.score,
            "grade": grade_for(get_settings(session), answer.score),
            "transaction_id": answer.transaction_id,
            "reason": answer.reason,
            "response_enc": cipher.encrypt(json.dumps(answer.raw)),
            "run_at": utcnow(),
        },
    )


def fail_pull(session: Session, check_id: int, reason: str) -> CreditCheck | None:
    return settle(
        session, CreditCheck, check_id, lambda: {"status": "failed", "reason": reason[:500], "run_at": utcnow()}
    )


def remove_customer(session: Session, customer_id: int) -> None:
    """``customer.deleted``: the customer's checks and PreChecks go, their encrypted answers with them.
    A pull still running finds its check gone and records nothing."""
    for model in (CreditCheck, PreCheck):
        session.execute(delete(model).where(model.customer_id == customer_id))
