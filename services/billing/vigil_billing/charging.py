"""Handing a pending payment to the worker: the task ``billing.charge_payment.v1`` on billing's queue.

Sent after the payment's transaction commits. Should the broker be unreachable at that moment, the
payment stays ``pending`` and is found again by the sweep of pending charges (``sweep_pending``
re-sends those older than a minute; the processor idempotency key makes a second send harmless).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.db import utcnow
from vigil_shared.service import current_runtime

from .models import Payment

CHARGE_TASK = "billing.charge_payment.v1"
log = logging.getLogger("vigil.billing.charging")

# replaced by tests (which run the charge at once) and by the worker's own sweep
Sender = Callable[[int], None]


def _send(payment_id: int) -> None:
    runtime = current_runtime()
    try:
        runtime.send_task(CHARGE_TASK, [payment_id])
    except Exception as exc:  # noqa: BLE001 - the sweep sends it again; the payment is safe as pending
        log.warning("charge not sent; the sweep will", extra={"payment_id": payment_id, "error": type(exc).__name__})


send: Sender = _send


def request_charge(payment_id: int) -> None:
    send(payment_id)


# A card payment still pending this long after it was made has lost its charge task: the task's own
# retries (tasks.CHARGE_RETRIES, with backoff: about five minutes, each attempt up to three processor
# calls with their timeouts) are over by then. Before, the due job took every payment pending for a
# minute and charged again, inline, those whose task was still retrying: under a processor outage each
# run held the billing worker for most of the minute and billing events queued behind it.
STALE_AFTER = timedelta(minutes=15)


def stale_pending(session: Session, older_than: timedelta = STALE_AFTER) -> list[int]:
    cutoff = utcnow() - older_than
    return list(
        session.scalars(select(Payment.id).where(Payment.status == "pending", Payment.created_at < cutoff).limit(500))
    )


RUN_DUE_TASK = "billing.run_due.v1"


def request_run_due(day: str | None) -> None:
    current_runtime().send_task(RUN_DUE_TASK, [day])
