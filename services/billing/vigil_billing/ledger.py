"""The ledger: a customer's transactions with a running balance, AR aging, and statements (JSON, PDF).

Entries (amounts in minor units; positive raises what the customer owes):

- ``invoice``: an invoice billed to the customer was issued (``+total``) on its issue date;
- ``void``: it was voided (``-total``);
- ``payment``: a payment of the customer succeeded (``-amount``);
- ``refund``: part of one was refunded (``+amount``).

A parent's transactions include every sub-customer's invoice billed through it (each entry names its
``customer_id``): that is the combined view of seed 001. The running balance is a window sum in the
database, so the first page of 50,000 entries is one indexed query.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Date, Integer, String, and_, func, literal, select, true, type_coerce, union_all
from sqlalchemy.orm import Session

from .models import Invoice, KnownCustomer, Payment, Refund
from .money import format_amount

ORDER = {"invoice": 1, "void": 2, "payment": 3, "refund": 4}


def _entries(customer_id: int):
    def day(column):
        return type_coerce(func.date(column), Date)

    invoice = select(
        literal("invoice", String).label("kind"),
        literal(ORDER["invoice"], Integer).label("rank"),
        Invoice.id.label("ref_id"),
        type_coerce(Invoice.issue_date, Date).label("day"),
        Invoice.customer_id.label("customer_id"),
        Invoice.number.label("number"),
        Invoice.total.label("amount"),
    ).where(Invoice.bill_to_customer_id == customer_id, Invoice.issue_date.is_not(None))
    void = select(
        literal("void", String),
        literal(ORDER["void"], Integer),
        Invoice.id,
        day(Invoice.voided_at),
        Invoice.customer_id,
        Invoice.number,
        -Invoice.total,
    ).where(Invoice.bill_to_customer_id == customer_id, Invoice.status == "void", Invoice.issue_date.is_not(None))
    payment = select(
        literal("payment", String),
        literal(ORDER["payment"], Integer),
        Payment.id,
        day(Payment.received_at),
        Payment.customer_id,
        literal(None, Integer),
        -Payment.amount,
    ).where(Payment.customer_id == customer_id, Payment.status == "succeeded")
    refund = (
        select(
            literal("refund", String),
            literal(ORDER["refund"], Integer),
            Refund.id,
            day(Refund.created_at),
            Payment.customer_id,
            Refund.payment_id,
            Refund.amount,
        )
        .join(Payment, Payment.id == Refund.payment_id)
        .where(Payment.customer_id == customer_id)
    )
    return union_all(invoice, void, payment, refund).subquery("entries")


def _describe(row: Any) -> str:
    if row.kind == "invoice":
        return f"Invoice {row.number}"
    if row.kind == "void":
        return f"Invoice {row.number} voided"
    if row.kind == "payment":
        return "Payment received"
    return f"Refund of payment {row.number}"


def _entry(row: Any) -> dict[str, Any]:
    return {
        "kind": row.kind,
        "id": row.ref_id,
        "date": row.day,
        "customer_id": row.customer_id,
        "description": _describe(row),
        "amount": int(row.amount),
        "balance": int(row.balance),
    }


@dataclass
class Transactions:
    items: list[dict[str, Any]]
    total: int


def transactions(
    session: Session, customer_id: int, page: int, per_page: int, since: date | None = None, until: date | None = None
) -> Transactions:
    """Newest first, each with the balance after it (over all the customer's history)."""
    entries = _entries(customer_id)
    balance = func.sum(entries.c.amount).over(order_by=(entries.c.day, entries.c.rank, entries.c.ref_id))
    ledger = select(*entries.c, balance.label("balance")).subquery("ledger")
    conditions = []
    if since is not None:
        conditions.append(ledger.c.day >= since)
    if until is not None:
        conditions.append(ledger.c.day <= until)
    where = and_(true(), *conditions)
    total = session.scalar(select(func.count()).select_from(ledger).where(where)) or 0
    rows = session.execute(
        select(ledger)
        .where(where)
        .order_by(ledger.c.day.desc(), ledger.c.rank.desc(), ledger.c.ref_id.desc())
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    return Transactions([_entry(row) for row in rows], int(total))


def balance_before(session: Session, customer_id: int, day: date) -> int:
    entries = _entries(customer_id)
    return int(session.scalar(select(func.coalesce(func.sum(entries.c.amount), 0)).where(entries.c.day < day)) or 0)


def statement(session: Session, customer_id: int, currency: str, since: date, until: date) -> dict[str, Any]:
    opening = balance_before(session, customer_id, since)
    everything = transactions(session, customer_id, 1, 10_000, since, until).items
    entries = list(reversed(everything))  # oldest first on a statement
    closing = opening + sum(e["amount"] for e in entries)
    return {
        "customer_id": customer_id,
        "currency": currency,
        "from": since,
        "to": until,
        "opening_balance": opening,
        "closing_balance": closing,
        "entries": entries,
    }


def statement_pdf(body: dict[str, Any]) -> bytes:
    """The statement as a PDF (fpdf2, core fonts: every text here is ASCII)."""
    from fpdf import FPDF

    currency = body["currency"]
    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.cell(0, 10, f"Statement - customer {body['customer_id']}", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font("Helvetica", size=10)
    pdf.cell(0, 6, f"Period {body['from']} to {body['to']} ({currency})", new_x="LMARGIN", new_y="NEXT")
    pdf.cell(
        0, 6, f"Opening balance: {format_amount(body['opening_balance'], currency)}", new_x="LMARGIN", new_y="NEXT"
    )
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 10)
    for text, width in (("Date", 30), ("Description", 80), ("Amount", 35), ("Balance", 35)):
        pdf.cell(width, 7, text, border=1)
    pdf.ln()
    pdf.set_font("Helvetica", size=10)
    for entry in body["entries"]:
        pdf.cell(30, 6, str(entry["date"]), border=1)
        pdf.cell(80, 6, entry["description"][:45], border=1)
        pdf.cell(35, 6, format_amount(entry["amount"], currency), border=1, align="R")
        pdf.cell(35, 6, format_amount(entry["balance"], currency), border=1, align="R")
        pdf.ln()
    pdf.ln(2)
    pdf.set_font("Helvetica", "B", 10)
    pdf.cell(
        0, 6, f"Closing balance: {format_amount(body['closing_balance'], currency)}", new_x="LMARGIN", new_y="NEXT"
    )
    return bytes(pdf.output())


# --- AR aging ----------------------------------------------------------------------------------------------

BUCKETS = ("current", "days_1_30", "days_31_60", "days_61_90", "days_over_90")


def ar_aging(
    session: Session, today: date, locations: frozenset[int] | None, location_id: int | None, page: int, per_page: int
) -> tuple[list[dict[str, Any]], int, dict[str, int]]:
    """What each customer owes on open invoices, by how long past due (current, 1-30, 31-60, 61-90, 90+)."""
    owed = Invoice.total - Invoice.amount_paid
    statement = (
        select(Invoice.bill_to_customer_id, KnownCustomer.location_id, Invoice.due_date, owed)
        .join(KnownCustomer, KnownCustomer.customer_id == Invoice.bill_to_customer_id)
        .where(Invoice.status.in_(("issued", "partially_paid")), KnownCustomer.deleted.is_(False))
    )
    if locations is not None:
        statement = statement.where(KnownCustomer.location_id.in_(locations))
    if location_id is not None:
        statement = statement.where(KnownCustomer.location_id == location_id)
    rows = session.execute(statement).all()
    customers: dict[int, dict[str, Any]] = {}
    totals = dict.fromkeys((*BUCKETS, "total"), 0)
    for customer_id, location, due, amount in rows:
        late = (today - due).days if due is not None else 0
        bucket = (
            "current"
            if late <= 0
            else "days_1_30"
            if late <= 30
            else "days_31_60"
            if late <= 60
            else "days_61_90"
            if late <= 90
            else "days_over_90"
        )
        entry = customers.setdefault(
            customer_id, {"customer_id": customer_id, "location_id": location, **dict.fromkeys((*BUCKETS, "total"), 0)}
        )
        for target in (entry, totals):
            target[bucket] += int(amount)
            target["total"] += int(amount)
    ordered = sorted(customers.values(), key=lambda e: (-e["total"], e["customer_id"]))
    start = (page - 1) * per_page
    return ordered[start : start + per_page], len(ordered), totals
