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

import logging
from collections.abc import Callable
from typing import Any

from sqlalchemy.orm import Session

from vigil_shared.messaging.celery_app import send_to_queue
from vigil_shared.messaging.contracts import (
    CreditCheckRequested,
    CustomerCreated,
    CustomerUpdated,
    Event,
    PreCheckRequested,
)
from vigil_shared.messaging.outbox import EventConsumer
from vigil_shared.runtime import ServiceRuntime

from . import checks, customer_client, prechecks
from .adt import Adt, HttpAdt
from .bureau import Bureau, BureauFailure, HttpBureau

log = logging.getLogger("vigil.credit.tasks")

PULL_TASK = "credit.pull_check.v1"
PRECHECK_TASK = "credit.run_precheck.v1"
SUBJECT_RETRIES = 5  # the customer service down: retried with backoff (1, 2, 4, 8, 16 s), then failed
Subject = Callable[[int, str | None], dict[str, Any]]


def idempotency_key(check_id: int) -> str:
    return f"vigil-credit-check-{check_id}"


def event_consumer(runtime: ServiceRuntime) -> EventConsumer:
    consumer = runtime.consumer()

    def queue(task_name: str, job_id: int, event: Event[Any]) -> None:
        # sent before the inbox row commits: a failure after the send runs the job at most twice, and
        # the second run finds it done (or asks the bureau or ADT with the same key)
        args = [job_id, event.request_id]
        send_to_queue(
            runtime.celery, task_name, runtime.settings.queue_name(), args, headers={"request_id": event.request_id}
        )

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

    @consumer.on(PreCheckRequested)
    def precheck_requested(session: Session, event: Event[PreCheckRequested]) -> None:
        queue(PRECHECK_TASK, event.payload.precheck_id, event)

    return consumer


def precheck_key(precheck_id: int) -> str:
    return f"vigil-precheck-{precheck_id}"


def run_precheck(runtime: ServiceRuntime, precheck_id: int, request_id: str | None, adt: Adt, subject: Subject) -> str:
    """One ADT PreCheck, start to end, like :func:`run_pull`; returns its status (``skipped`` when done)."""
    with runtime.db.transaction() as session:
        precheck = prechecks.start(session, precheck_id)
        if precheck is None:
            return "skipped"
        customer_id = precheck.customer_id
    return _ask(
        runtime,
        ("precheck_id", precheck_id),
        request_id,
        lambda: subject(customer_id, request_id),
        lambda person: adt.precheck(
            {name: person.get(name) for name in prechecks.ADT_FIELDS}, precheck_key(precheck_id)
        ),
        prechecks.finish,
        lambda reason: _precheck_failed(runtime, precheck_id, reason),
    )


class Unanswerable(BureauFailure):
    """No outside call can answer: the subject lacks what it needs (a pull without an SSN)."""


def _ask(
    runtime: ServiceRuntime,
    job: tuple[str, int],
    request_id: str | None,
    read_subject: Callable[[], dict[str, Any]],
    ask: Callable[[dict[str, Any]], Any],
    finish: Callable[..., Any],
    failed: Callable[[str], str],
) -> str:
    """The middle and end of a pull or pre-check: the subject read from the customer service (kept in
    memory only while ``ask`` sends it out), the outside answer recorded by ``finish``, or ``failed``.
    The customer service unavailable (:class:`CustomerUnavailable`) is raised: the task is retried
    and the job stays running."""
    try:
        person = read_subject()
    except customer_client.CustomerGone:
        return failed("The customer no longer exists.")
    try:
        answer = ask(person)
    except BureauFailure as failure:
        return failed(failure.reason)
    finally:
        del person
    return _settled(runtime, finish, job, answer, request_id)


def _precheck_failed(runtime: ServiceRuntime, precheck_id: int, reason: str) -> str:
    return _gave_up(runtime, prechecks.fail, ("precheck_id", precheck_id), reason, "error")


def _settled(
    runtime: ServiceRuntime, finish: Callable[..., Any], job: tuple[str, int], answer: Any, rid: str | None
) -> str:
    """Records the answer of a pull or pre-check (``finish``; ``job``: its log key and id) in its own
    transaction; returns its status (``skipped`` when it had one already)."""
    key, job_id = job
    with runtime.db.transaction() as session:
        done = finish(session, runtime.cipher, job_id, answer)
    what = "credit pull" if key == "check_id" else "precheck"
    log.info(f"{what} finished", extra={key: job_id, "status": answer.status, "request_id": rid})
    return done.status if done is not None else "skipped"


def _gave_up(runtime: ServiceRuntime, fail: Callable[..., Any], job: tuple[str, int], reason: str, outcome: str) -> str:
    """Records why a pull or pre-check failed (``fail``) in its own transaction; returns ``outcome``."""
    key, job_id = job
    with runtime.db.transaction() as session:
        fail(session, job_id, reason)
    what = "credit pull" if key == "check_id" else "precheck"
    log.warning(f"{what} failed", extra={key: job_id, "reason": reason})
    return outcome


def run_pull(runtime: ServiceRuntime, check_id: int, request_id: str | None, bureau: Bureau, subject: Subject) -> str:
    """One pull, start to end; returns the check's status (``skipped`` when it was already done)."""
    with runtime.db.transaction() as session:
        check = checks.start_pull(session, check_id)
        if check is None:
            return "skipped"
        bureau_name = check.bureau or ""
        request = checks.request_view(check, runtime.cipher)
        customer_id = check.customer_id

    def pull(person: dict[str, Any]) -> Any:
        if not person.get("ssn"):
            raise Unanswerable("The customer has no SSN; a bureau pull needs one.")
        if request.get("previous_address"):
            person = person | {"previous_address": request["previous_address"]}
        return bureau.pull(bureau_name, person, request.get("options") or {}, idempotency_key(check_id))

    return _ask(
        runtime,
        ("check_id", check_id),
        request_id,
        lambda: subject(customer_id, request_id),
        pull,
        checks.finish_pull,
        lambda reason: _fail(runtime, check_id, reason),
    )


def _fail(runtime: ServiceRuntime, check_id: int, reason: str) -> str:
    return _gave_up(runtime, checks.fail_pull, ("check_id", check_id), reason, "failed")


def _retried(task: Any, run: Callable[[], str], give_up: Callable[[], str]) -> str:
    """``run()``; while the customer service cannot be asked, the task is retried with backoff, then
    ``give_up()`` records the failure."""
    try:
        return run()
    except customer_client.CustomerUnavailable:
        if task.request.retries >= SUBJECT_RETRIES:
            return give_up()
        raise task.retry(countdown=2**task.request.retries) from None


def register_tasks(runtime: ServiceRuntime) -> None:
    event_consumer(runtime).register_task(runtime.celery)
    bureau = HttpBureau.from_env()

    def subject(customer_id: int, request_id: str | None) -> dict[str, Any]:
        return customer_client.credit_subject(runtime.settings, customer_id, request_id)

    def job_task(name: str, run: Callable[[int, str | None], str], give_up: Callable[[int], str]) -> None:
        """A worker task running one credit pull or pre-check (its id, the request id); while the
        customer service cannot be asked it is retried with backoff, then ``give_up`` records the failure."""

        @runtime.celery.task(name=name, bind=True, max_retries=SUBJECT_RETRIES)
        def run_job(task: Any, job_id: int, request_id: str | None = None) -> str:
            return _retried(task, lambda: run(job_id, request_id), lambda: give_up(job_id))

    job_task(
        PULL_TASK,
        lambda check_id, request_id: run_pull(runtime, check_id, request_id, bureau, subject),
        lambda check_id: _fail(runtime, check_id, "The customer service could not be asked for the subject's details."),
    )
    adt = HttpAdt.from_env()
    job_task(
        PRECHECK_TASK,
        lambda precheck_id, request_id: run_precheck(runtime, precheck_id, request_id, adt, subject),
        lambda precheck_id: _precheck_failed(
            runtime, precheck_id, "The customer service could not be asked for the details."
        ),
    )
