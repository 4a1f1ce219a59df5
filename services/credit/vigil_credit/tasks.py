"""Celery tasks of the credit service: the pulls.

``credit.check_requested`` (from this service's own outbox, so a pull is never lost between the
request's commit and the broker) hands the check to ``credit.pull_check.v1``, which does the long,
external part outside any database transaction:

1. mark the check running (short transaction); a check that already has its answer is left alone;
2. fetch the subject's SSN and birthdate from the customer service (signed internal call, audited
   there) into memory only;
3. ask the bureau with the idempotency key ``vigil-credit-check-<id>``: a redelivered task (the
   worker was killed mid-pull) asks again with the same key and gets the same inquiry back;
4. record the answer, or the failure and its reason (short transaction).
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from vigil_shared.config import env_int
from vigil_shared.masking import MASK, scrub_subject
from vigil_shared.messaging.contracts import (
    CreditCheckRequested,
    CustomerCreated,
    CustomerDeleted,
    CustomerUpdated,
    Event,
    PreCheckRequested,
)
from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import checks, customer_client, prechecks
from .adt import Adt, HttpAdt
from .bureau import Bureau, BureauFailure, HttpBureau
from .slots import SharedSlots, SlotUnavailable

log = logging.getLogger("vigil.credit.tasks")

PULL_TASK = "credit.pull_check.v1"
PRECHECK_TASK = "credit.run_precheck.v1"
SUBJECT_RETRIES = 5  # the customer service down: retried with backoff (1, 2, 4, 8, 16 s), then failed
SLOT_MARGIN = 5.0  # seconds a slot's lease outlasts the longest request, for a worker that dies holding it
# why a task could not run now: retried with the same backoff, then the check or PreCheck fails saying so
TRANSIENT: dict[type[Exception], str] = {
    customer_client.CustomerUnavailable: "The customer service could not be asked for the subject's details.",
    SlotUnavailable: "Too many requests were waiting for a free connection to {system}; try again later.",
}
Subject = Callable[[int, str | None], dict[str, Any]]


def idempotency_key(check_id: int) -> str:
    return f"vigil-credit-check-{check_id}"


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    consumer = runtime.consumer()

    def queue(task_name: str, job_id: int, event: Event[Any]) -> None:
        # sent before the inbox row commits: a failure after the send runs the job at most twice, and
        # the second run finds it done (or asks the bureau or ADT with the same key)
        args = [job_id, event.request_id]
        runtime.send_task(task_name, args, headers={"request_id": event.request_id})

    @consumer.on(CreditCheckRequested)
    def check_requested(session: Session, event: Event[CreditCheckRequested]) -> None:
        queue(PULL_TASK, event.payload.check_id, event)

    @consumer.on(CustomerCreated)
    def customer_created(session: Session, event: Event[CustomerCreated]) -> None:
        # an ADT customer whose company has PreCheck Order Enabled: the PreCheck starts now
        if event.payload.precheck:
            prechecks.request(session, runtime.outbox(event.request_id), event.payload.customer_id, "create", None)

    @consumer.on(CustomerUpdated)
    def customer_updated(session: Session, event: Event[CustomerUpdated]) -> None:
        # phone, address or SSN changed: the company may want the PreCheck run again
        customer_id = event.payload.customer_id
        if not prechecks.RERUN_FIELDS & set(event.payload.changed):
            return
        if not checks.get_settings(session).precheck_rerun_on_change:
            return
        if prechecks.latest_status(session, customer_id) is None:
            return  # never pre-checked: nothing to refresh
        prechecks.request(session, runtime.outbox(event.request_id), customer_id, "change", None)

    @consumer.on(CustomerDeleted)
    def customer_deleted(session: Session, event: Event[CustomerDeleted]) -> None:
        checks.remove_customer(session, event.payload.customer_id)

    @consumer.on(PreCheckRequested)
    def precheck_requested(session: Session, event: Event[PreCheckRequested]) -> None:
        queue(PRECHECK_TASK, event.payload.precheck_id, event)

    return consumer


def _unsaid(person: dict[str, Any]) -> Callable[[str | None], str | None]:
    """Masks the subject's own SSN and birthdate, in whatever form they are written, in an outside
    system's words (a bureau's or ADT's reason, a refusal). Those words are kept and shown to every
    caller with ``credit.view``, who may not read either value ("reveal a confidential value through
    an error, a reason"); the adapters mask SSN-shaped runs only, not knowing the subject."""
    ssn, birthdate = person.get("ssn"), person.get("birthdate")
    return lambda words: scrub_subject(words, ssn, str(birthdate) if birthdate else None)


def _untold(person: dict[str, Any]) -> Callable[[str | None], str | None]:
    """An outside system's reference (a bureau's transaction id, ADT's PreCheck reference) masked whole when
    it holds the subject's own SSN or birthdate, in whatever form (as :func:`_unsaid` finds them); otherwise
    kept as it came, however many digits it has. A transaction id becomes the customer's credit tracking
    number and travels in ``credit.check_applied`` (the gateway's change feed and webhook payloads)."""
    ssn, birthdate = person.get("ssn"), person.get("birthdate")

    def untold(reference: str | None) -> str | None:
        holds = reference and scrub_subject(reference, ssn, str(birthdate) if birthdate else None, shapes=False)
        return MASK if reference and holds != reference else reference

    return untold


def precheck_key(precheck_id: int) -> str:
    return f"vigil-precheck-{precheck_id}"


def run_precheck(runtime: ServiceRuntime, precheck_id: int, request_id: str | None, adt: Adt, subject: Subject) -> str:
    """One ADT PreCheck, start to end, like :func:`run_pull`; returns its status (``skipped`` when done)."""
    took = Stopwatch()
    with runtime.db.transaction() as session:
        precheck = prechecks.start(session, precheck_id)
        if precheck is None:
            return "skipped"
        customer_id = precheck.customer_id
    took.lap("start_s")
    try:
        person = subject(customer_id, request_id)
    except customer_client.CustomerGone:
        return _precheck_failed(runtime, precheck_id, "The customer no longer exists.")
    took.lap("subject_s")
    unsaid, untold = _unsaid(person), _untold(person)
    try:
        answer = adt.precheck({name: person.get(name) for name in prechecks.ADT_FIELDS}, precheck_key(precheck_id))
    except BureauFailure as failure:
        return _precheck_failed(runtime, precheck_id, unsaid(failure.reason) or "")
    finally:
        del person
    answer = dataclasses.replace(
        answer, reasons=[unsaid(reason) or "" for reason in answer.reasons], reference=untold(answer.reference)
    )
    took.lap("adt_s")  # waiting for a slot included
    with runtime.db.transaction() as session:
        done = prechecks.finish(session, runtime.cipher, precheck_id, answer)
    took.lap("record_s")
    log.info(
        "precheck finished",
        extra={"precheck_id": precheck_id, "status": answer.status, "request_id": request_id} | took.laps,
    )
    return done.status if done is not None else "skipped"


class Stopwatch:
    """Seconds each step of a task took, for its log line (where a slow PreCheck spent its time)."""

    def __init__(self) -> None:
        self.laps: dict[str, float] = {}
        self._last = time.monotonic()

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 4)
        self._last = now


def _precheck_failed(runtime: ServiceRuntime, precheck_id: int, reason: str) -> str:
    with runtime.db.transaction() as session:
        prechecks.fail(session, precheck_id, reason)
    log.warning("precheck failed", extra={"precheck_id": precheck_id, "reason": reason})
    return "error"


def run_pull(runtime: ServiceRuntime, check_id: int, request_id: str | None, bureau: Bureau, subject: Subject) -> str:
    """One pull, start to end; returns the check's status (``skipped`` when it was already done)."""
    with runtime.db.transaction() as session:
        check = checks.start_pull(session, check_id)
        if check is None:
            return "skipped"
        bureau_name = check.bureau or ""
        request = checks.request_view(check, runtime.cipher)
        customer_id = check.customer_id
    try:
        person = subject(customer_id, request_id)
    except customer_client.CustomerGone:
        return _fail(runtime, check_id, "The customer no longer exists.")
    except customer_client.CustomerUnavailable:
        raise  # transient: the task is retried, the check stays running
    if not person.get("ssn"):
        return _fail(runtime, check_id, "The customer has no SSN; a bureau pull needs one.")
    if request.get("previous_address"):
        person = person | {"previous_address": request["previous_address"]}
    unsaid, untold = _unsaid(person), _untold(person)
    try:
        answer = bureau.pull(bureau_name, person, request.get("options") or {}, idempotency_key(check_id))
    except BureauFailure as failure:
        return _fail(runtime, check_id, unsaid(failure.reason) or "")
    finally:
        del person
    answer = dataclasses.replace(answer, reason=unsaid(answer.reason), transaction_id=untold(answer.transaction_id))
    with runtime.db.transaction() as session:
        done = checks.finish_pull(session, runtime.cipher, check_id, answer)
    log.info("credit pull finished", extra={"check_id": check_id, "status": answer.status, "request_id": request_id})
    return done.status if done is not None else "skipped"


def _fail(runtime: ServiceRuntime, check_id: int, reason: str) -> str:
    with runtime.db.transaction() as session:
        checks.fail_pull(session, check_id, reason)
    log.warning("credit pull failed", extra={"check_id": check_id, "reason": reason})
    return "failed"


def capped(runtime: ServiceRuntime, http: HttpBureau, name: str, setting: str) -> HttpBureau:
    """``http`` holding one of the ``setting`` (default 8) slots named ``name`` around each request: the
    cap is shared by every worker process and thread (``slots``), so the outside system never sees more."""
    slots = SharedSlots(runtime.db, name, env_int(setting, 8), lease=http.longest_request + SLOT_MARGIN)
    http.gate = slots.hold
    return http


def retry_or_fail(task: Any, error: Exception, system: str, fail: Callable[[str], str]) -> str:
    """Retried after 1, 2, 4, 8, 16 s, then ``fail`` with the reason: the ``TRANSIENT`` one, or for an
    unforeseen error (the database lost mid-task, a bug) its class, so nothing is left running for ever
    and the row says why (the message is not kept: it could quote a subject's details)."""
    reason = TRANSIENT.get(type(error), "The worker could not run it ({error}).").format(
        system=system, error=type(error).__name__
    )
    if task.request.retries >= SUBJECT_RETRIES:
        return fail(reason)
    known = type(error) in TRANSIENT
    log.log(
        logging.INFO if known else logging.ERROR,
        "task retried",
        extra={"reason": reason, "attempt": task.request.retries + 1},
        exc_info=None if known else error,
    )
    raise task.retry(countdown=2**task.request.retries) from None


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
    bureau = capped(runtime, HttpBureau.from_env(), "bureau", "VIGIL_BUREAU_CONCURRENCY")

    def subject(customer_id: int, request_id: str | None) -> dict[str, Any]:
        return customer_client.credit_subject(runtime.settings, customer_id, request_id)

    def outside_call(
        name: str,
        who: str,
        run: Callable[[ServiceRuntime, int, str | None, Any, Subject], str],
        outside: Any,
        fail: Callable[[ServiceRuntime, int, str], str],
    ) -> None:
        """The task of one job (a check or a PreCheck) that waits on ``who``: every error is retried, then
        the job fails with its reason."""

        @runtime.celery.task(name=name, bind=True, max_retries=SUBJECT_RETRIES)
        def call(task: Any, job_id: int, request_id: str | None = None) -> str:
            try:
                return run(runtime, job_id, request_id, outside, subject)
            except Exception as error:  # noqa: BLE001 - each is retried, then the job fails with its reason
                return retry_or_fail(task, error, who, lambda reason: fail(runtime, job_id, reason))

    outside_call(PULL_TASK, "the bureau", run_pull, bureau, _fail)
    adt = HttpAdt(capped(runtime, HttpBureau.from_env(), "adt", "VIGIL_ADT_CONCURRENCY"))
    outside_call(PRECHECK_TASK, "ADT", run_precheck, adt, _precheck_failed)
