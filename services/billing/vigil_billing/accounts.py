"""A customer's billing account as others see it, and removing everything billing holds for a customer.

``remove_customer`` runs when the customer service announces ``customer.deleted`` (seed: deleting a
customer removes "all associated data … invoices"): each table holding a customer's billing data is
listed in :data:`CUSTOMER_DATA` (children before parents) and emptied of the customer's rows.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import delete, or_, select
from sqlalchemy.orm import Session

from . import ledger
from .models import (
    BillingMethod,
    BillingSettings,
    Invoice,
    InvoiceLine,
    KnownCustomer,
    Payment,
    PaymentAllocation,
    RateAssignment,
    RecurringInvoice,
    Refund,
    ScheduledPayment,
)

# the customer's rows of each table, children before parents
CUSTOMER_DATA: list[Any] = [
    RateAssignment.customer_id,
    Invoice.customer_id,
    BillingMethod.customer_id,
    RecurringInvoice.customer_id,
    ScheduledPayment.customer_id,
]


def remove_customer(session: Session, customer_id: int) -> None:
    ledger.unpost_customer(session, customer_id)
    invoices = select(Invoice.id).where(Invoice.customer_id == customer_id)
    payments = select(Payment.id).where(Payment.customer_id == customer_id)
    session.execute(
        delete(PaymentAllocation).where(
            or_(PaymentAllocation.invoice_id.in_(invoices), PaymentAllocation.payment_id.in_(payments))
        )
    )
    session.execute(delete(Refund).where(Refund.payment_id.in_(payments)))
    session.execute(delete(Payment).where(Payment.customer_id == customer_id))
    session.execute(delete(InvoiceLine).where(InvoiceLine.invoice_id.in_(invoices)))
    for column in CUSTOMER_DATA:
        session.execute(delete(column.class_).where(column == customer_id))


def account_body(known: KnownCustomer, settings: BillingSettings, **extra: Any) -> dict[str, Any]:
    return {
        "customer_id": known.customer_id,
        "location_id": known.location_id,
        "kind": known.kind,
        "parent_id": known.parent_id,
        "archived": bool(known.archived),
        "currency": settings.currency,
        **extra,
    }
