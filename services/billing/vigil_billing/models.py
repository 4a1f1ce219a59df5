"""Tables the billing service owns. No other service reads them.

Nothing here has a foreign key to another service's data: customers and locations live elsewhere
and are referred to by id. What billing knows about a customer (office location, kind, parent,
archived) is the ``known_customers`` replica, fed by the customer service's events.

Money columns are ``BigInteger`` minor units of the company currency (:mod:`vigil_billing.money`).
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Date, ForeignKey, Index, Integer, SmallInteger, String, false, true
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from vigil_shared.db import EditedRecord, ServiceTables, UTCDateTime, Versioned, service_metadata, utcnow
from vigil_shared.messaging.outbox import messaging_models

from .money import DEFAULT_CURRENCY


class Base(ServiceTables, DeclarativeBase):
    metadata = service_metadata()


messaging = messaging_models(Base)


class KnownCustomer(Base):
    """The billing service's replica of a customer: where it is, what it is, who pays for it.

    ``location_as_of`` orders location updates (an older event never moves a customer back);
    ``deleted`` is a tombstone (ids are never reused).
    """

    __tablename__ = "known_customers"

    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    location_id: Mapped[int | None] = mapped_column(Integer)
    location_as_of: Mapped[datetime | None] = mapped_column(UTCDateTime())
    kind: Mapped[str | None] = mapped_column(String(20))  # customer | lead
    parent_id: Mapped[int | None] = mapped_column(Integer, index=True)  # the parent it bills through
    archived: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    archived_as_of: Mapped[datetime | None] = mapped_column(UTCDateTime())  # orders archive/unarchive facts
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class BillingSettings(Versioned, Base):
    """The company's billing configuration: one row (id 1), created with its defaults on first read."""

    __tablename__ = "billing_settings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    currency: Mapped[str] = mapped_column(String(3), default=DEFAULT_CURRENCY)
    # default tax rate of a new invoice line, in basis points (825 = 8.25 %)
    tax_rate_bp: Mapped[int] = mapped_column(Integer, default=0)
    payment_terms_days: Mapped[int] = mapped_column(Integer, default=30)
    # MMR: the line items a rate breaks down into (e.g. monitoring, financing, warranty) and the mode
    mmr_breakout: Mapped[bool] = mapped_column(Boolean, default=False)
    mmr_items: Mapped[list] = mapped_column(JSON, default=list)  # [{"key": "monitoring", "label": "Monitoring"}]
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class Rate(EditedRecord, Base):
    """A monthly monitoring rate (MMR) of the company's catalog: a total and its line-item breakdown.

    ``items`` maps the company's MMR item keys to minor units and adds up to ``total``. When the
    company's item configuration changes, a rate whose keys no longer match it is *mismatched*
    (computed, :func:`vigil_billing.rates.is_mismatched`): it stays on customers that have it but is
    given to no one else.
    """

    __tablename__ = "rates"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str | None] = mapped_column(String(100))
    total: Mapped[int] = mapped_column(BigInteger)
    items: Mapped[dict] = mapped_column(JSON, default=dict)  # {"monitoring": 2999, "warranty": 500}
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default=true())


class RateAssignment(Versioned, Base):
    """The rate a customer is billed monthly, with its contract term: billing's record of the sale."""

    __tablename__ = "rate_assignments"

    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    rate_id: Mapped[int] = mapped_column(ForeignKey("rates.id"), index=True)
    a_la_carte: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    contract_term_months: Mapped[int | None] = mapped_column(Integer)
    contract_start: Mapped[date | None] = mapped_column(Date)
    assigned_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


INVOICE_STATUSES = ("draft", "issued", "partially_paid", "paid", "void")


class InvoiceCounter(Base):
    """The last invoice number handed out, per company (one row): numbers are sequential and never reused."""

    __tablename__ = "invoice_counters"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    last_number: Mapped[int] = mapped_column(BigInteger, default=0)


class Invoice(EditedRecord, Base):
    """A one-time or recurring invoice. Immutable once issued: only payments (``amount_paid``) and
    voiding change it afterwards; a correction is a void and a new invoice."""

    __tablename__ = "invoices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    # who owes it: the customer, or the parent a sub-customer bills through (fixed when created)
    bill_to_customer_id: Mapped[int] = mapped_column(Integer, index=True)
    status: Mapped[str] = mapped_column(String(20), default="draft")
    number: Mapped[int | None] = mapped_column(BigInteger, unique=True)
    currency: Mapped[str] = mapped_column(String(3))
    issue_date: Mapped[date | None] = mapped_column(Date)
    due_date: Mapped[date | None] = mapped_column(Date)
    memo: Mapped[str | None] = mapped_column(String(500))
    subtotal: Mapped[int] = mapped_column(BigInteger, default=0)
    tax_total: Mapped[int] = mapped_column(BigInteger, default=0)
    total: Mapped[int] = mapped_column(BigInteger, default=0)
    amount_paid: Mapped[int] = mapped_column(BigInteger, default=0)
    recurring_invoice_id: Mapped[int | None] = mapped_column(Integer, index=True)
    # "<recurring id>:<period start>": one invoice per period of a recurring invoice (unique)
    period_key: Mapped[str | None] = mapped_column(String(60), unique=True)
    void_reason: Mapped[str | None] = mapped_column(String(500))
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime())

    lines: Mapped[list[InvoiceLine]] = relationship(
        back_populates="invoice", order_by="InvoiceLine.position", cascade="all, delete-orphan"
    )

    @property
    def balance(self) -> int:
        return 0 if self.status == "void" else self.total - self.amount_paid


class InvoiceLine(Base):
    """One line: ``amount = quantity × unit_price``; ``tax = amount × tax_rate_bp / 10000`` rounded half
    away from zero (:func:`vigil_billing.money.line_tax`)."""

    __tablename__ = "invoice_lines"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id", ondelete="CASCADE"), index=True)
    position: Mapped[int] = mapped_column(Integer)
    description: Mapped[str] = mapped_column(String(200))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_price: Mapped[int] = mapped_column(BigInteger)
    amount: Mapped[int] = mapped_column(BigInteger)
    tax_rate_bp: Mapped[int] = mapped_column(Integer, default=0)
    tax: Mapped[int] = mapped_column(BigInteger, default=0)

    invoice: Mapped[Invoice] = relationship(back_populates="lines")


class BillingMethod(Versioned, Base):
    """A credit card or bank account of a customer, as a processor token and its safe facts only:
    never a card number or full account number (Vigil never receives one)."""

    __tablename__ = "billing_methods"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(10))  # card | ach
    token: Mapped[str] = mapped_column(String(100), unique=True)
    brand: Mapped[str | None] = mapped_column(String(30))
    last4: Mapped[str] = mapped_column(String(4))
    exp_month: Mapped[int | None] = mapped_column(Integer)
    exp_year: Mapped[int | None] = mapped_column(Integer)
    holder: Mapped[str | None] = mapped_column(String(100))
    is_default: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


PAYMENT_METHODS = ("cash", "check", "card", "ach")
PAYMENT_STATUSES = ("pending", "succeeded", "failed")


class Payment(EditedRecord, Base):
    """Money received from a customer (cash, check) or charged to a billing method through the processor.

    ``processor_key`` is the idempotency key of the charge, fixed when the payment is created: every
    attempt (a retried task, a redelivered message) sends the same one, so the processor charges once.
    A refund's key is derived from it (:func:`~vigil_billing.payments.refund_key`).
    ``unallocated`` is what is left once allocated to invoices and refunded: the customer's credit.
    """

    __tablename__ = "payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    method: Mapped[str] = mapped_column(String(10))
    billing_method_id: Mapped[int | None] = mapped_column(Integer)
    check_number: Mapped[str | None] = mapped_column(String(40))
    memo: Mapped[str | None] = mapped_column(String(500))
    amount: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(20), default="pending")
    processor_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    processor_charge_id: Mapped[str | None] = mapped_column(String(80))
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_message: Mapped[str | None] = mapped_column(String(200))
    amount_refunded: Mapped[int] = mapped_column(BigInteger, default=0)
    # refunds the processor refused: each ends an attempt, so the next one sends a new key (payments.refund_key)
    refund_refusals: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    # the amount of the refund attempt whose answer was lost (its outcome unknown): asked again only for
    # that amount, under the same key, until the processor answers (payments.refund)
    refund_pending_amount: Mapped[int | None] = mapped_column(BigInteger)
    unallocated: Mapped[int] = mapped_column(BigInteger, default=0)
    # invoices to pay first (ids), as asked when the payment was made; otherwise oldest due first
    allocate_to: Mapped[list] = mapped_column(JSON, default=list)
    received_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PaymentAllocation(Base):
    """How much of a payment went to an invoice (negative rows take some back on a refund)."""

    __tablename__ = "payment_allocations"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    invoice_id: Mapped[int] = mapped_column(ForeignKey("invoices.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class Refund(Base):
    __tablename__ = "refunds"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    payment_id: Mapped[int] = mapped_column(ForeignKey("payments.id"), index=True)
    amount: Mapped[int] = mapped_column(BigInteger)
    processor_refund_id: Mapped[str | None] = mapped_column(String(80))
    reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class RecurringInvoice(EditedRecord, Base):
    """A template issuing an invoice every ``interval_months`` from ``next_date``, until ``end_date`` or
    ``remaining`` issues. Each issue carries the period key ``"<id>:<period date>"``, unique among
    invoices: a period is invoiced once whatever runs the job, how often, or how it dies."""

    __tablename__ = "recurring_invoices"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    # who is billed: the customer, or the parent (set automatically for a sub-customer's new templates)
    bill_to_customer_id: Mapped[int] = mapped_column(Integer, index=True)
    lines: Mapped[list] = mapped_column(JSON)
    memo: Mapped[str | None] = mapped_column(String(500))
    interval_months: Mapped[int] = mapped_column(Integer, default=1)
    start_date: Mapped[date] = mapped_column(Date)
    next_date: Mapped[date | None] = mapped_column(Date, index=True)
    end_date: Mapped[date | None] = mapped_column(Date)
    remaining: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(20), default="active")  # active | cancelled | ended
    # the archive operation that cancelled it (docs/archive.md): what unarchive may restore
    cancelled_by_operation: Mapped[str | None] = mapped_column(String(48), index=True)


class ScheduledPayment(EditedRecord, Base):
    """A future-dated charge of a billing method, run by the job when due; soft declines are retried on
    a schedule, then it is failed with the processor's reason. Each attempt is a payment whose key is
    ``"vigil-scheduled-<id>-<attempt>"`` (unique): an attempt is charged once."""

    __tablename__ = "scheduled_payments"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    billing_method_id: Mapped[int] = mapped_column(Integer)
    amount: Mapped[int] = mapped_column(BigInteger)
    due_date: Mapped[date] = mapped_column(Date)
    next_attempt_on: Mapped[date | None] = mapped_column(Date, index=True)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    status: Mapped[str] = mapped_column(String(20), default="scheduled")  # scheduled|succeeded|failed|cancelled
    payment_id: Mapped[int | None] = mapped_column(Integer)  # the latest attempt
    # the archive operation that cancelled it (docs/archive.md): what unarchive may restore
    cancelled_by_operation: Mapped[str | None] = mapped_column(String(48), index=True)
    failure_code: Mapped[str | None] = mapped_column(String(60))
    failure_message: Mapped[str | None] = mapped_column(String(200))


class LedgerEntry(Base):
    """One posting of a customer's ledger: an invoice issued (``+total``), voided (``-total``), a payment
    received (``-amount``) or refunded (``+amount``), written in the transaction that does it.

    ``account_id`` is whose AR it moves (the bill-to customer: a parent for its subs' invoices),
    ``customer_id`` whose activity it is. Entries are listed newest first by ``(day, rank, ref_id)``
    (rank: invoice, void, payment, refund on one day), straight from the index on
    ``(account_id, day, rank, ref_id)`` (keyset order).
    """

    __tablename__ = "ledger_entries"

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    account_id: Mapped[int] = mapped_column(Integer)
    customer_id: Mapped[int] = mapped_column(Integer, index=True)
    kind: Mapped[str] = mapped_column(String(10))  # invoice | void | payment | refund
    rank: Mapped[int] = mapped_column(SmallInteger)
    ref_id: Mapped[int] = mapped_column(Integer)  # the invoice, payment or refund
    day: Mapped[date] = mapped_column(Date)
    number: Mapped[int | None] = mapped_column(BigInteger)  # the invoice number; a refund's payment id
    amount: Mapped[int] = mapped_column(BigInteger)

    __table_args__ = (
        Index("ix_ledger_entries_account_order", "account_id", "day", "rank", "ref_id"),
        Index("uq_ledger_entries_kind_ref", "kind", "ref_id", unique=True),
    )


class LedgerAccount(Base):
    """A customer's AR as a running total: the sum and count of its ledger entries, moved with each
    posting (so page 1 of 50,000 entries needs neither a sum nor a count over them)."""

    __tablename__ = "ledger_accounts"

    customer_id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    balance: Mapped[int] = mapped_column(BigInteger, default=0)
    entries: Mapped[int] = mapped_column(BigInteger, default=0)


# Tables holding amounts in the company currency: the currency is fixed once any has a row.
MONEY_TABLES: list[Any] = [Rate, Invoice, Payment, RecurringInvoice, ScheduledPayment]
