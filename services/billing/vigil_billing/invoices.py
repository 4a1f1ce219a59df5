"""Invoices: lines with tax per line, sequential numbers per company, and their life cycle.

draft → issued → partially_paid → paid, or void. A draft is edited freely and has no number; issuing
gives it the company's next number (a counter row updated in the same transaction, so numbers are
sequential, unique and never reused), its issue date and due date, and announces ``invoice.issued``.
An issued invoice is immutable: payments change only ``amount_paid`` (and so the status), and a
correction is a void (``invoice.voided``, only while nothing is paid on it) and a new invoice.

Amounts: ``line.amount = quantity × unit_price``; ``line.tax`` rounds ``amount × rate / 10000`` half
away from zero per line (:mod:`vigil_billing.money`); ``subtotal``, ``tax_total`` and ``total`` are
the sums of the lines, so a printed invoice always adds up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from vigil_shared.db import added, utcnow
from vigil_shared.errors import Problem, conflict, get_or_404, validation_problem
from vigil_shared.http import Page, paginate
from vigil_shared.messaging.contracts import InvoiceIssued, InvoiceVoided
from vigil_shared.messaging.outbox import Outbox

from . import company, ledger
from .models import Invoice, InvoiceCounter, InvoiceLine, KnownCustomer
from .money import MAX_AMOUNT, line_tax

_UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}
OPEN = ("issued", "partially_paid")  # issued and not yet fully paid: what the customer owes
COMPANY = 1


def _insert(session: Session, model: Any):
    return _UPSERTS[session.get_bind().dialect.name](model)


def get_invoice(session: Session, invoice_id: int) -> Invoice:
    return get_or_404(session, Invoice, invoice_id, "invoice")


def not_a_draft(invoice: Invoice) -> Problem:
    return conflict(
        f"Invoice {invoice.number} is {invoice.status}: an issued invoice does not change. Void it and issue "
        "a new one.",
        invoice_status=invoice.status,
    )


def line_values(data: list[dict[str, Any]], default_tax_bp: int) -> list[dict[str, Any]]:
    """The columns of each line (amount, the tax rate or the default, the tax rounded per line)."""
    lines = []
    for position, line in enumerate(data, start=1):
        amount = line["quantity"] * line["unit_price"]
        if amount > MAX_AMOUNT:
            raise validation_problem({f"lines.{position - 1}.unit_price": ["The line amount is too large."]})
        rate = line.get("tax_rate_bp")
        rate = default_tax_bp if rate is None else rate
        lines.append(
            {
                "position": position,
                "description": line["description"],
                "quantity": line["quantity"],
                "unit_price": line["unit_price"],
                "amount": amount,
                "tax_rate_bp": rate,
                "tax": line_tax(amount, rate),
            }
        )
    return lines


def _lines(data: list[dict[str, Any]], default_tax_bp: int) -> list[InvoiceLine]:
    return [InvoiceLine(**values) for values in line_values(data, default_tax_bp)]


def _set_lines(invoice: Invoice, lines: list[InvoiceLine]) -> None:
    invoice.lines = lines
    invoice.subtotal = sum(line.amount for line in lines)
    invoice.tax_total = sum(line.tax for line in lines)
    invoice.total = invoice.subtotal + invoice.tax_total
    if invoice.total > MAX_AMOUNT:
        raise validation_problem({"lines": ["The invoice total is too large."]})


def bill_to(customer: KnownCustomer, through_parent: bool = True) -> int:
    """Who owes a new invoice of ``customer``: its parent when it bills through one (AR lives there)."""
    return customer.parent_id if through_parent and customer.parent_id else customer.customer_id


def create_invoice(session: Session, customer: KnownCustomer, data: dict[str, Any]) -> Invoice:
    settings = company.settings_of(session)
    invoice = Invoice(
        customer_id=customer.customer_id,
        bill_to_customer_id=bill_to(customer, data.get("bill_to_parent", True)),
        status="draft",
        currency=settings.currency,
        due_date=data.get("due_date"),
        memo=data.get("memo"),
        amount_paid=0,
        recurring_invoice_id=data.get("recurring_invoice_id"),
        period_key=data.get("period_key"),
    )
    _set_lines(invoice, _lines(data["lines"], settings.tax_rate_bp))
    return added(session, invoice)


def update_draft(session: Session, invoice: Invoice, changes: dict[str, Any]) -> Invoice:
    if invoice.status != "draft":
        raise not_a_draft(invoice)
    if "lines" in changes:
        settings = company.settings_of(session)
        _set_lines(invoice, _lines(changes["lines"], settings.tax_rate_bp))
    for name in ("due_date", "memo"):
        if name in changes:
            setattr(invoice, name, changes[name])
    session.flush()
    return invoice


def delete_draft(session: Session, invoice: Invoice) -> None:
    if invoice.status != "draft":
        raise not_a_draft(invoice)
    session.delete(invoice)
    session.flush()


def next_number(session: Session) -> int:
    """The company's next invoice number: the counter row is locked by the update until the commit."""
    return next_numbers(session, 1)


def next_numbers(session: Session, count: int) -> int:
    """Takes ``count`` consecutive numbers as a block; returns the first. The counter row stays locked
    by the update until the commit, so blocks never overlap and a rolled-back one is not lost."""
    session.execute(
        _insert(session, InvoiceCounter)
        .values(id=COMPANY, last_number=0)
        .on_conflict_do_nothing(index_elements=[InvoiceCounter.id])
    )
    last = session.execute(
        update(InvoiceCounter)
        .where(InvoiceCounter.id == COMPANY)
        .values(last_number=InvoiceCounter.last_number + count)
        .returning(InvoiceCounter.last_number)
    ).scalar_one()
    return int(last) - count + 1


def issue(session: Session, outbox: Outbox, invoice: Invoice, today: date) -> Invoice:
    if invoice.status != "draft":
        raise not_a_draft(invoice)
    if not invoice.lines:
        raise validation_problem({"lines": ["An invoice needs at least one line to be issued."]})
    settings = company.settings_of(session)
    invoice.number = next_number(session)
    invoice.issue_date = today
    if invoice.due_date is None:
        invoice.due_date = today + timedelta(days=settings.payment_terms_days)
    invoice.status = "paid" if invoice.total == 0 else "issued"
    session.flush()
    ledger.post(session, [issued_entry(invoice)])
    outbox.add(
        session,
        InvoiceIssued(
            invoice_id=invoice.id,
            customer_id=invoice.customer_id,
            number=invoice.number,
            total=invoice.total,
            currency=invoice.currency,
            due_date=invoice.due_date.isoformat(),
            bill_to_customer_id=invoice.bill_to_customer_id
            if invoice.bill_to_customer_id != invoice.customer_id
            else None,
        ),
    )
    return invoice


def issued_entry(invoice: Invoice) -> dict[str, Any]:
    assert invoice.issue_date is not None
    return ledger.entry(
        invoice.bill_to_customer_id,
        invoice.customer_id,
        "invoice",
        invoice.id,
        invoice.issue_date,
        invoice.total,
        invoice.number,
    )


def void(session: Session, outbox: Outbox, invoice: Invoice, reason: str | None) -> Invoice:
    if invoice.status == "void":
        raise conflict("The invoice is already void.", invoice_status="void")
    if invoice.status == "draft":
        raise conflict("A draft is deleted, not voided.", invoice_status="draft")
    if invoice.amount_paid:
        raise conflict(
            "Payments are allocated to this invoice: refund or reallocate them before voiding it.",
            invoice_status=invoice.status,
        )
    invoice.status = "void"
    invoice.void_reason = reason
    invoice.voided_at = utcnow()
    session.flush()
    ledger.post(
        session,
        [
            ledger.entry(
                invoice.bill_to_customer_id,
                invoice.customer_id,
                "void",
                invoice.id,
                invoice.voided_at.date(),
                -invoice.total,
                invoice.number,
            )
        ],
    )
    outbox.add(
        session,
        InvoiceVoided(invoice_id=invoice.id, customer_id=invoice.customer_id, number=invoice.number, reason=reason),
    )
    return invoice


def apply_payment(invoice: Invoice, amount: int) -> None:
    """Adds (or with a negative amount, takes back) a payment's allocation; the status follows."""
    invoice.amount_paid += amount
    if invoice.amount_paid < 0 or invoice.amount_paid > invoice.total:
        raise conflict("The allocation does not fit the invoice's balance.")
    invoice.status = (
        "paid" if invoice.amount_paid == invoice.total else ("partially_paid" if invoice.amount_paid else "issued")
    )


@dataclass(frozen=True)
class InvoiceQuery:
    customer_id: int | None = None
    bill_to_customer_id: int | None = None
    status: str | None = None


def list_invoices(session: Session, query: InvoiceQuery, page: int, per_page: int) -> Page:
    statement: Select[Any] = select(Invoice).order_by(Invoice.id.desc())
    if query.customer_id is not None:
        statement = statement.where(Invoice.customer_id == query.customer_id)
    if query.bill_to_customer_id is not None:
        statement = statement.where(Invoice.bill_to_customer_id == query.bill_to_customer_id)
    if query.status == "open":
        statement = statement.where(Invoice.status.in_(OPEN))
    elif query.status:
        statement = statement.where(Invoice.status == query.status)
    return paginate(session, statement, page, per_page)


def balances(session: Session, customer_id: int, today: date) -> tuple[int, int, int]:
    """``(balance, past_due, open invoices)`` the customer owes on the open invoices billed to it."""
    owed = Invoice.total - Invoice.amount_paid
    row = session.execute(
        select(
            func.coalesce(func.sum(owed), 0),
            func.coalesce(func.sum(owed).filter(Invoice.due_date < today), 0),
            func.count(),
        ).where(Invoice.bill_to_customer_id == customer_id, Invoice.status.in_(OPEN))
    ).one()
    return int(row[0]), int(row[1]), int(row[2])
