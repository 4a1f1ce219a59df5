"""Payments: cash and checks recorded, billing methods charged through the processor, allocation to
invoices, overpayment as credit, refunds.

A charge never runs in a request. The request records the payment ``pending`` with its processor
idempotency key and hands its id to the worker (``billing.charge_payment.v1``, sent after the
commit). :func:`run_charge` then reads the payment (a short transaction), calls the processor with
*no* transaction open, and applies the answer under a row lock only if the payment is still
pending. A task retried or redelivered after a crash at any point sends the same key, so the
processor answers the first charge again: nothing is charged twice, and the answer is applied once.

Allocation: a payment pays the invoices billed to its customer, those it names first (``allocate_to``),
then the oldest due; what is left is the customer's credit (``unallocated``). A refund comes out of
that credit first, then out of the newest allocations (the invoices reopen).

AR lives on the parent: a payment on a sub-customer that bills through a parent is refused with a
problem pointing to the parent's payments (seed 001, "What to expect after linking").
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

from sqlalchemy import Select, case, func, select, update
from sqlalchemy.orm import Session

from vigil_shared.db import added, utcnow
from vigil_shared.errors import CONFLICT, Problem, conflict, get_or_404, validation_problem
from vigil_shared.http import Page, paginate
from vigil_shared.messaging.contracts import PaymentFailed, PaymentReceived, PaymentRefunded
from vigil_shared.messaging.outbox import Outbox

from . import company, invoices, ledger
from .methods import unavailable
from .models import BillingMethod, Invoice, KnownCustomer, Payment, PaymentAllocation, Refund
from .processor import Processor, ProcessorUnavailable

log = logging.getLogger("vigil.billing.payments")


def parent_only(customer: KnownCustomer) -> Problem:
    parent = customer.parent_id
    return Problem(
        409,
        "This is a sub-customer: payments are received on the parent customer.",
        type=CONFLICT,
        title="Payments are received on the parent customer",
        parent_customer_id=parent,
        parent_payments=f"/api/v1/customers/{parent}/payments",
    )


def get_payment(session: Session, payment_id: int) -> Payment:
    return get_or_404(session, Payment, payment_id, "payment")


def create_payment(session: Session, outbox: Outbox, customer: KnownCustomer, data: dict[str, Any]) -> Payment:
    """Records a payment. Cash and checks are received now (allocated, ``payment.received``); a card
    or bank account payment is ``pending`` until the worker has charged it (:func:`run_charge`)."""
    if customer.parent_id:
        raise parent_only(customer)
    settings = company.settings_of(session)
    method = data["method"]
    payment = Payment(
        customer_id=customer.customer_id,
        method=method,
        amount=data["amount"],
        currency=settings.currency,
        check_number=data.get("check_number"),
        memo=data.get("memo"),
        allocate_to=list(data.get("invoice_ids") or []),
        amount_refunded=0,
        unallocated=0,
    )
    if method in ("card", "ach"):
        billing_method = session.get(BillingMethod, data.get("billing_method_id") or 0)
        if billing_method is None or billing_method.customer_id != customer.customer_id:
            raise validation_problem({"billing_method_id": ["Not a billing method of this customer."]})
        if billing_method.kind != method:
            raise validation_problem({"billing_method_id": [f"This billing method is not a {method}."]})
        payment.billing_method_id = billing_method.id
        payment.status = "pending"
        payment.processor_key = f"vigil-payment-{uuid.uuid4().hex}"
        return added(session, payment)
    if data.get("billing_method_id") is not None:
        raise validation_problem({"billing_method_id": ["Only card and ach payments charge a billing method."]})
    payment.status = "succeeded"
    payment.received_at = utcnow()
    added(session, payment)
    allocate(session, payment)
    _received(session, outbox, payment)
    return payment


def _event_fields(payment: Payment) -> dict[str, Any]:
    """What every payment event says of the payment."""
    return {"payment_id": payment.id} | {name: getattr(payment, name) for name in ("customer_id", "amount", "currency")}


def _received(session: Session, outbox: Outbox, payment: Payment) -> None:
    assert payment.received_at is not None
    ledger.post(
        session,
        [
            ledger.entry(
                payment.customer_id,
                payment.customer_id,
                "payment",
                payment.id,
                payment.received_at.date(),
                -payment.amount,
            )
        ],
    )
    outbox.add(
        session,
        PaymentReceived(**_event_fields(payment), method=payment.method),  # type: ignore[arg-type]
    )


def allocate(session: Session, payment: Payment) -> None:
    """Pays the open invoices billed to the payment's customer (named ones first, then oldest due)."""
    remaining = payment.amount - payment.amount_refunded
    named = [i for i in payment.allocate_to if isinstance(i, int)]
    ordering: list[Any] = [Invoice.due_date, Invoice.id]
    if named:
        ordering.insert(0, case({i: index for index, i in enumerate(named)}, value=Invoice.id, else_=len(named)))
    candidates = session.scalars(
        select(Invoice)
        .where(Invoice.bill_to_customer_id == payment.customer_id, Invoice.status.in_(invoices.OPEN))
        .order_by(*ordering)
        .with_for_update()
    ).all()
    for invoice in candidates:
        if remaining <= 0:
            break
        share = min(remaining, invoice.balance)
        if share <= 0:
            continue
        invoices.apply_payment(invoice, share)
        session.add(PaymentAllocation(payment_id=payment.id, invoice_id=invoice.id, amount=share))
        remaining -= share
    payment.unallocated = remaining
    session.flush()


# --- charging through the processor, in the worker ------------------------------------------------------


def run_charge(transaction: Callable[[], Any], outbox: Outbox, processor: Processor, payment_id: int) -> str:
    """Charges a pending payment once; returns its status. ``transaction()`` is a context manager giving
    a session committed on exit (the runtime's ``db.transaction``). Raises ``ProcessorUnavailable`` when
    the processor cannot be reached (the task retries it later with the same key)."""
    with transaction() as session:
        payment = session.get(Payment, payment_id)
        if payment is None or payment.status != "pending":
            return "gone" if payment is None else payment.status
        method = session.get(BillingMethod, payment.billing_method_id or 0)
        token, amount, currency, key = (
            method.token if method else None,
            payment.amount,
            payment.currency,
            payment.processor_key,
        )
    if token is None or key is None:
        return fail_payment(
            transaction, outbox, payment_id, "billing_method_removed", "The billing method was removed."
        )
    result = processor.charge(token, amount, currency, key)  # no transaction open while waiting on the network
    with transaction() as session:
        payment = session.scalars(select(Payment).where(Payment.id == payment_id).with_for_update()).one_or_none()
        if payment is None or payment.status != "pending":
            return "gone" if payment is None else payment.status  # another run applied it first
        payment.processor_charge_id = result.charge_id
        if result.succeeded:
            payment.status = "succeeded"
            payment.received_at = utcnow()
            allocate(session, payment)
            _received(session, outbox, payment)
        else:
            _failed(
                session, outbox, payment, result.failure_code or "declined", result.failure_message, result.soft_decline
            )
        return payment.status


def fail_payment(transaction: Callable[[], Any], outbox: Outbox, payment_id: int, code: str, message: str) -> str:
    with transaction() as session:
        payment = session.scalars(select(Payment).where(Payment.id == payment_id).with_for_update()).one_or_none()
        if payment is None or payment.status != "pending":
            return "gone" if payment is None else payment.status
        _failed(session, outbox, payment, code, message, False)
        return payment.status


def _failed(session: Session, outbox: Outbox, payment: Payment, code: str, message: str | None, soft: bool) -> None:
    payment.status = "failed"
    payment.failure_code = code[:60]
    payment.failure_message = (message or "")[:200] or None
    session.flush()
    outbox.add(
        session,
        PaymentFailed(**_event_fields(payment), failure_code=payment.failure_code, soft_decline=soft),
    )


# --- refunds ---------------------------------------------------------------------------------------------
# A refund's idempotency key names one attempt: the same key while its outcome is unknown (the adapter
# retries a timeout or a 5xx; the user asks again after a 503), so the processor refunds at most once
# and a retry gets the first answer; a new key once the attempt has a definitive answer. A success is
# a ``Refund`` row, a refusal a ``refund_refusals`` count, committed although the answer is a 409
# (``commands.refund_payment``): a processor replays a refusal for its key, so asking again with the
# same key could never succeed. An attempt whose answer was lost keeps its amount
# (``refund_pending_amount``, committed with the 503): until the processor answers, a refund is asked
# for that amount only (409 otherwise). Another amount under the same key would be refused by the
# processor as a reused key, and that refusal must not end the attempt: the next key would refund again
# what the lost attempt may already have refunded.


class RefundRefused(Exception):
    """The processor definitively refused a refund (the attempt is over); ``problem`` is the answer."""

    def __init__(self, problem: Problem):
        super().__init__(problem.detail)
        self.problem = problem


class RefundUnknown(Exception):
    """The processor could not be asked, or its answer was lost: the attempt of ``amount`` may have
    refunded; ``problem`` is the answer (503)."""

    def __init__(self, problem: Problem, amount: int):
        super().__init__(problem.detail)
        self.problem = problem
        self.amount = amount


def refund_key(payment: Payment, refunds_done: int) -> str:
    """The idempotency key of the payment's next refund attempt (the first keeps the historical form)."""
    key = f"{payment.processor_key}-refund-{refunds_done + 1}"
    return f"{key}-{payment.refund_refusals}" if payment.refund_refusals else key


def count_refusal(session: Session, payment_id: int) -> None:
    """Ends a refused attempt: the next one sends a new key. Not a change of the payment (no new version)."""
    session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(refund_refusals=Payment.refund_refusals + 1, refund_pending_amount=None)
        .execution_options(synchronize_session=False)
    )


def keep_pending(session: Session, payment_id: int, amount: int) -> None:
    """Keeps the amount of an attempt whose outcome is unknown: the next one asks for it again under the
    same key. Not a change of the payment (no new version)."""
    session.execute(
        update(Payment)
        .where(Payment.id == payment_id)
        .values(refund_pending_amount=amount)
        .execution_options(synchronize_session=False)
    )


def refund(
    session: Session, outbox: Outbox, processor: Processor, payment: Payment, amount: int | None, reason: str | None
) -> Refund:
    """Refunds ``amount`` (all that is left when None) of a succeeded payment; :class:`RefundRefused`
    when the processor refuses it, a 503 problem when it cannot be asked (the outcome is unknown: the
    next attempt sends the same key)."""
    if payment.status != "succeeded":
        raise conflict(f"Only a succeeded payment is refunded; this one is {payment.status}.")
    left = payment.amount - payment.amount_refunded
    amount = left if amount is None else amount
    if amount <= 0 or amount > left:
        raise validation_problem({"amount": [f"At most {left} is left to refund."]})
    pending = payment.refund_pending_amount
    if pending is not None and amount != pending:
        raise conflict(
            f"A refund of {pending} is unresolved: the processor's answer to it was lost, and it may have "
            f"been made. Ask for {pending} again to learn its outcome before refunding another amount.",
            code="refund_unresolved",
        )
    done = session.scalar(select(func.count()).where(Refund.payment_id == payment.id)) or 0
    processor_refund_id = None
    if payment.method in ("card", "ach"):
        try:
            result = processor.refund(payment.processor_charge_id or "", amount, refund_key(payment, done))
        except ProcessorUnavailable:
            raise RefundUnknown(unavailable(), amount) from None
        if not result.succeeded:
            raise RefundRefused(
                conflict(f"The processor refused the refund: {result.failure_message}", code=result.failure_code)
            )
        processor_refund_id = result.charge_id
    payment.refund_pending_amount = None
    from_credit = min(payment.unallocated, amount)
    payment.unallocated -= from_credit
    rest = amount - from_credit
    allocations = session.scalars(
        select(PaymentAllocation)
        .where(PaymentAllocation.payment_id == payment.id)
        .order_by(PaymentAllocation.id.desc())
    ).all()
    net: dict[int, int] = {}
    for allocation in allocations:
        net[allocation.invoice_id] = net.get(allocation.invoice_id, 0) + allocation.amount
    for invoice_id in sorted(net, reverse=True):
        if rest <= 0:
            break
        back = min(rest, net[invoice_id])
        if back <= 0:
            continue
        invoice = session.scalars(select(Invoice).where(Invoice.id == invoice_id).with_for_update()).one()
        invoices.apply_payment(invoice, -back)
        session.add(PaymentAllocation(payment_id=payment.id, invoice_id=invoice_id, amount=-back))
        rest -= back
    payment.amount_refunded += amount
    record = Refund(payment_id=payment.id, amount=amount, processor_refund_id=processor_refund_id, reason=reason)
    added(session, record)
    ledger.post(
        session,
        [
            ledger.entry(
                payment.customer_id,
                payment.customer_id,
                "refund",
                record.id,
                record.created_at.date(),
                amount,
                payment.id,
            )
        ],
    )
    outbox.add(
        session,
        PaymentRefunded(
            payment_id=payment.id, customer_id=payment.customer_id, amount=amount, currency=payment.currency
        ),
    )
    return record


def allocations_of(session: Session, payment_id: int) -> list[dict[str, int]]:
    rows = session.execute(
        select(PaymentAllocation.invoice_id, func.sum(PaymentAllocation.amount))
        .where(PaymentAllocation.payment_id == payment_id)
        .group_by(PaymentAllocation.invoice_id)
        .order_by(PaymentAllocation.invoice_id)
    ).all()
    return [{"invoice_id": invoice_id, "amount": int(amount)} for invoice_id, amount in rows if amount]


def list_payments(session: Session, customer_id: int, page: int, per_page: int) -> Page:
    statement: Select[Any] = select(Payment).where(Payment.customer_id == customer_id).order_by(Payment.id.desc())
    return paginate(session, statement, page, per_page)


def credit_of(session: Session, customer_id: int) -> int:
    """The customer's credit: what its succeeded payments left unallocated."""
    return int(
        session.scalar(
            select(func.coalesce(func.sum(Payment.unallocated), 0)).where(
                Payment.customer_id == customer_id, Payment.status == "succeeded"
            )
        )
        or 0
    )
