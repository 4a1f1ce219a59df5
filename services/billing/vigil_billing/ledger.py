"""The ledger: a customer's transactions with a running balance, AR aging, and statements (JSON, PDF).

Entries (amounts in minor units; positive raises what the customer owes):

- ``invoice``: an invoice billed to the customer was issued (``+total``) on its issue date;
- ``void``: it was voided (``-total``);
- ``payment``: a payment of the customer succeeded (``-amount``);
- ``refund``: part of one was refunded (``+amount``).

Each is a ``ledger_entries`` row written by :func:`post` in the transaction that makes the change,
on the account of who owes it (the bill-to customer), and moves that account's stored total
(``ledger_accounts``). A parent's transactions are its account's entries, which include every
sub-customer's invoice billed through it (each entry names its ``customer_id``): the combined view
of seed 001.

Page 1 of 50,000 entries reads ``per_page`` rows from the index on ``(account_id, day, rank,
ref_id)`` (keyset order) and the account's stored total; each row's balance is that total minus a
window sum over the page (plus, on a later page, the sum of the entries before it). Nothing sums
the whole history.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

from sqlalchemy import Date, Select, and_, bindparam, case, delete, func, insert, literal, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from . import bulk
from .models import Invoice, KnownCustomer, LedgerAccount, LedgerEntry
from .money import format_amount

ORDER = {"invoice": 1, "void": 2, "payment": 3, "refund": 4}
_UPSERTS = {"postgresql": postgresql.insert, "sqlite": sqlite.insert}


def entry(
    account_id: int, customer_id: int, kind: str, ref_id: int, day: date, amount: int, number: int | None = None
) -> dict[str, Any]:
    """A posting for :func:`post` (``kind``: invoice, void, payment or refund)."""
    return {
        "account_id": account_id,
        "customer_id": customer_id,
        "kind": kind,
        "rank": ORDER[kind],
        "ref_id": ref_id,
        "day": day,
        "number": number,
        "amount": amount,
    }


def post(session: Session, entries: list[dict[str, Any]]) -> None:
    """Writes the entries and moves their accounts' totals, in the caller's transaction (one statement
    per table however many entries; accounts are updated in id order, so concurrent posters never
    deadlock on them)."""
    if not entries:
        return
    bulk.insert_rows(session, bulk.table_of(LedgerEntry), entries)
    moves: dict[int, dict[str, int]] = {}
    for item in entries:
        move = moves.setdefault(item["account_id"], {"customer_id": item["account_id"], "balance": 0, "entries": 0})
        move["balance"] += item["amount"]
        move["entries"] += 1
    bulk.add_to_rows(session, bulk.table_of(LedgerAccount), "customer_id", list(moves.values()))


def post_issued(session: Session, first: int, last: int) -> None:
    """Posts the invoices numbered ``first``..``last`` (a block just issued by the due job) with one
    ``INSERT … SELECT`` per table: the entries and their accounts' totals come from the invoices'
    own columns in the database."""
    numbered = Invoice.number.between(first, last)
    session.execute(
        insert(LedgerEntry).from_select(
            ["account_id", "customer_id", "kind", "rank", "ref_id", "day", "number", "amount"],
            select(
                Invoice.bill_to_customer_id,
                Invoice.customer_id,
                literal("invoice"),
                literal(ORDER["invoice"]),
                Invoice.id,
                Invoice.issue_date,
                Invoice.number,
                Invoice.total,
            ).where(numbered),
        )
    )
    moves = (
        select(Invoice.bill_to_customer_id, func.sum(Invoice.total), func.count())
        .where(numbered)
        .group_by(Invoice.bill_to_customer_id)
        .order_by(Invoice.bill_to_customer_id)
    )
    statement: Any = _UPSERTS[session.get_bind().dialect.name](LedgerAccount).from_select(
        ["customer_id", "balance", "entries"], moves
    )
    session.execute(
        statement.on_conflict_do_update(
            index_elements=[LedgerAccount.customer_id],
            set_={
                "balance": LedgerAccount.balance + statement.excluded.balance,
                "entries": LedgerAccount.entries + statement.excluded.entries,
            },
        )
    )


def unpost_customer(session: Session, customer_id: int) -> None:
    """Removes a deleted customer's entries and recomputes the totals of the accounts they were on."""
    accounts = list(
        session.scalars(select(LedgerEntry.account_id).where(LedgerEntry.customer_id == customer_id).distinct())
    )
    session.execute(delete(LedgerEntry).where(LedgerEntry.customer_id == customer_id))
    for account in sorted(accounts):
        total, count = session.execute(
            select(func.coalesce(func.sum(LedgerEntry.amount), 0), func.count()).where(
                LedgerEntry.account_id == account
            )
        ).one()
        session.execute(
            update(LedgerAccount).where(LedgerAccount.customer_id == account).values(balance=total, entries=count)
        )


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


NEWEST_FIRST = (LedgerEntry.day.desc(), LedgerEntry.rank.desc(), LedgerEntry.ref_id.desc())


def _sum(session: Session, statement: Select[Any]) -> int:
    return int(session.scalar(statement) or 0)


def account_total(session: Session, customer_id: int) -> tuple[int, int]:
    """``(balance, entries)`` of the customer's account, as stored."""
    row = session.execute(
        select(LedgerAccount.balance, LedgerAccount.entries).where(LedgerAccount.customer_id == customer_id)
    ).one_or_none()
    return (int(row[0]), int(row[1])) if row is not None else (0, 0)


@functools.cache
def _page_statement(since: bool, until: bool, skipping: bool) -> Select[Any]:
    """The statement of a page of transactions, built once per shape (the parameters are bound at
    each call): the page read from the index, the account's stored total and entry count, and (past
    page 1, or with ``to``) the sum of what comes before the page."""
    account = LedgerEntry.account_id == bindparam("customer_id")
    conditions = [account]
    if since:
        conditions.append(LedgerEntry.day >= bindparam("since", type_=Date))
    if until:
        conditions.append(LedgerEntry.day <= bindparam("until", type_=Date))
    where = and_(*conditions)
    own = LedgerAccount.customer_id == bindparam("customer_id")
    stored = select(LedgerAccount.balance).where(own).scalar_subquery()
    if len(conditions) == 1:
        count = select(LedgerAccount.entries).where(own).scalar_subquery()
    else:
        count = select(func.count()).where(where).scalar_subquery()
    # the balance after the newest entry of the page: the account's total less what was posted after it
    opening: Any = func.coalesce(stored, 0)
    if until:
        later = select(func.sum(LedgerEntry.amount)).where(account, LedgerEntry.day > bindparam("until", type_=Date))
        opening = opening - func.coalesce(later.scalar_subquery(), 0)
    if skipping:
        skipped = (
            select(LedgerEntry.amount)
            .where(where)
            .order_by(*NEWEST_FIRST)
            .limit(bindparam("offset"))
            .subquery("skipped")
        )
        opening = opening - func.coalesce(select(func.sum(skipped.c.amount)).scalar_subquery(), 0)
    rows = (
        select(LedgerEntry.kind, LedgerEntry.rank, LedgerEntry.ref_id, LedgerEntry.day, LedgerEntry.customer_id)
        .add_columns(LedgerEntry.number, LedgerEntry.amount)
        .where(where)
        .order_by(*NEWEST_FIRST)
        .limit(bindparam("limit"))
        .offset(bindparam("offset"))
        .subquery("page")
    )
    newest_first = (rows.c.day.desc(), rows.c.rank.desc(), rows.c.ref_id.desc())
    newer = func.sum(rows.c.amount).over(order_by=newest_first, rows=(None, -1))
    return select(rows, (opening - func.coalesce(newer, 0)).label("balance"), count.label("entries")).order_by(
        *newest_first
    )


def transactions(
    session: Session, customer_id: int, page: int, per_page: int, since: date | None = None, until: date | None = None
) -> Transactions:
    """Newest first, each with the balance after it (over all the customer's history): one statement."""
    offset = (page - 1) * per_page
    statement = _page_statement(since is not None, until is not None, offset > 0)
    params = {"customer_id": customer_id, "since": since, "until": until, "limit": per_page, "offset": offset}
    result = session.execute(statement, params).all()
    if result:
        return Transactions([_entry(row) for row in result], int(result[0].entries or 0))
    # past the last page (or nothing yet): only the count is wanted
    counted = _page_statement(since is not None, until is not None, False)
    again = session.execute(counted, params | {"limit": 1, "offset": 0}).first()
    return Transactions([], int(again.entries or 0) if again is not None else 0)


def balance_before(session: Session, customer_id: int, day: date) -> int:
    """The balance at the start of ``day``: the stored total less what was posted since (a recent range)."""
    since = _sum(
        session,
        select(func.sum(LedgerEntry.amount)).where(LedgerEntry.account_id == customer_id, LedgerEntry.day >= day),
    )
    return account_total(session, customer_id)[0] - since


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
    """What each customer owes on open invoices, by how long past due (current, 1-30, 31-60, 61-90, 90+):
    summed and paged in the database: one grouped query gives the page, and the count and totals of
    every group by window sums over them."""
    owed = Invoice.total - Invoice.amount_paid
    due = Invoice.due_date
    limits = [today - timedelta(days=days) for days in (0, 30, 60, 90)]  # due on or after: at most N days late
    buckets = {
        "current": func.sum(case(((due.is_(None)) | (due >= limits[0]), owed), else_=0)),
        "days_1_30": func.sum(case((and_(due < limits[0], due >= limits[1]), owed), else_=0)),
        "days_31_60": func.sum(case((and_(due < limits[1], due >= limits[2]), owed), else_=0)),
        "days_61_90": func.sum(case((and_(due < limits[2], due >= limits[3]), owed), else_=0)),
        "days_over_90": func.sum(case((due < limits[3], owed), else_=0)),
        "total": func.sum(owed),
    }
    per_customer = (
        select(
            Invoice.bill_to_customer_id.label("customer_id"),
            KnownCustomer.location_id.label("location_id"),
            *(value.label(name) for name, value in buckets.items()),
        )
        .join(KnownCustomer, KnownCustomer.customer_id == Invoice.bill_to_customer_id)
        .where(Invoice.status.in_(("issued", "partially_paid")), KnownCustomer.deleted.is_(False))
        .group_by(Invoice.bill_to_customer_id, KnownCustomer.location_id)
    )
    if locations is not None:
        per_customer = per_customer.where(KnownCustomer.location_id.in_(locations))
    if location_id is not None:
        per_customer = per_customer.where(KnownCustomer.location_id == location_id)
    grouped = per_customer.subquery("aging")
    names = (*BUCKETS, "total")
    whole = {f"all_{name}": func.sum(grouped.c[name]).over() for name in names}  # over every group, before the page
    rows = session.execute(
        select(grouped, func.count().over().label("customers"), *(value.label(key) for key, value in whole.items()))
        .order_by(grouped.c.total.desc(), grouped.c.customer_id)
        .limit(per_page)
        .offset((page - 1) * per_page)
    ).all()
    if rows:
        first = rows[0]._mapping
        summary = [first["customers"], *(first[f"all_{name}"] for name in names)]
    else:  # past the last page: the count and totals alone
        summary = list(
            session.execute(
                select(func.count(), *(func.coalesce(func.sum(grouped.c[name]), 0) for name in names))
            ).one()
        )
    totals = {name: int(value) for name, value in zip(names, summary[1:], strict=True)}
    items = [
        {"customer_id": row.customer_id, "location_id": row.location_id}
        | {name: int(row._mapping[name]) for name in names}
        for row in rows
    ]
    return items, int(summary[0]), totals
