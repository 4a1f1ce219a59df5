"""Billing methods: a customer's cards and bank accounts, created from a processor token.

The client tokenizes the card at the processor (Vigil never sees the number) and sends the token;
billing asks the processor for the token's safe facts — kind, brand, last four, expiry, holder — and
stores those with the token, nothing else. A token already on file, unknown to the processor, or of
an expired card is refused (422).
"""

from __future__ import annotations

from datetime import date
from typing import Any

from sqlalchemy import Select, select, update
from sqlalchemy.orm import Session

from vigil_shared import errors
from vigil_shared.db import added
from vigil_shared.errors import Problem, conflict, get_or_404, validation_problem
from vigil_shared.http import Page, paginate

from .models import BillingMethod, KnownCustomer
from .processor import Processor, ProcessorUnavailable


def unavailable() -> Problem:
    return errors.unavailable("The payment processor could not be reached. Try again shortly.")


def add_method(
    session: Session, processor: Processor, customer_id: int, data: dict[str, Any], today: date
) -> BillingMethod:
    try:
        facts = processor.token_facts(data["token"])
    except ProcessorUnavailable:
        raise unavailable() from None
    if facts is None:
        raise validation_problem({"token": ["The processor does not know this token."]})
    if (
        facts.exp_year is not None
        and facts.exp_month is not None
        and (facts.exp_year, facts.exp_month)
        < (
            today.year,
            today.month,
        )
    ):
        raise validation_problem({"token": ["The card has expired."]})
    _serialize_defaults(session, customer_id)
    if session.scalar(select(BillingMethod.id).where(BillingMethod.token == facts.token)) is not None:
        raise conflict("This token is already a billing method.", errors={"token": ["Already on file."]})
    first = session.scalar(select(BillingMethod.id).where(BillingMethod.customer_id == customer_id).limit(1)) is None
    method = BillingMethod(
        customer_id=customer_id,
        kind=facts.kind if facts.kind in ("card", "ach") else "card",
        token=facts.token,
        brand=(facts.brand or None) and str(facts.brand)[:30],
        last4=facts.last4,
        exp_month=facts.exp_month,
        exp_year=facts.exp_year,
        holder=(facts.holder or None) and str(facts.holder)[:100],
        is_default=first or bool(data.get("is_default")),
    )
    if method.is_default and not first:
        _clear_default(session, customer_id)
    return added(session, method)


def _serialize_defaults(session: Session, customer_id: int) -> None:
    """Holds the customer's replica row until the commit, so writes that choose the customer's default
    method (an add, a make-default) run one after the other. Without it, two at once each cleared the
    default they saw and set their own: the customer was left with several defaults (and two first
    methods added at once were both made default)."""
    session.execute(select(KnownCustomer.customer_id).where(KnownCustomer.customer_id == customer_id).with_for_update())


def _clear_default(session: Session, customer_id: int) -> None:
    session.execute(
        update(BillingMethod)
        .where(BillingMethod.customer_id == customer_id, BillingMethod.is_default.is_(True))
        .values(is_default=False, version=BillingMethod.version + 1)
        .execution_options(synchronize_session="fetch")
    )


def make_default(session: Session, method: BillingMethod) -> BillingMethod:
    _serialize_defaults(session, method.customer_id)
    session.refresh(method)
    if not method.is_default:
        _clear_default(session, method.customer_id)
        session.refresh(method)
        method.is_default = True
        session.flush()
    return method


def get_method(session: Session, method_id: int) -> BillingMethod:
    return get_or_404(session, BillingMethod, method_id, "billing method")


def remove_method(session: Session, method: BillingMethod) -> None:
    session.delete(method)
    session.flush()


def list_methods(session: Session, customer_id: int, page: int, per_page: int) -> Page:
    statement: Select[Any] = (
        select(BillingMethod).where(BillingMethod.customer_id == customer_id).order_by(BillingMethod.id)
    )
    return paginate(session, statement, page, per_page)
