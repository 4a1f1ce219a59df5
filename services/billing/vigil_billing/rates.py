"""The MMR rate catalog, the picker's filters, and the rate assigned to each customer.

A rate's ``items`` (its line-item breakdown) map the company's MMR item keys (``monitoring``,
``financing``, ``warranty``…) to minor units, and always add up to its ``total``. A rate is
**mismatched** when the company's item configuration has changed so that the rate's keys are no
longer exactly the configured ones (seed 001, "Choosing a monthly rate"): the rate stays on the
customers who already have it, and may be chosen again for them, but is given to no other customer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from typing import Any

from sqlalchemy import Select, delete, func, select
from sqlalchemy.orm import Session

from vigil_shared.db import added, utcnow
from vigil_shared.errors import Problem, conflict, get_or_404, validation_problem
from vigil_shared.http import Page, paginate

from . import company
from .models import BillingSettings, Rate, RateAssignment


def is_mismatched(rate: Rate, settings: BillingSettings) -> bool:
    """The rule: a breakdown must name exactly the configured item keys (none configured: none named)."""
    return set((rate.items or {}).keys()) != set(company.item_keys(settings))


def rate_body(rate: Rate, settings: BillingSettings) -> dict[str, Any]:
    labels = {item["key"]: item["label"] for item in settings.mmr_items or []}
    return {
        "id": rate.id,
        "name": rate.name,
        "total": rate.total,
        "currency": settings.currency,
        "items": [
            {"key": key, "label": labels.get(key, key), "amount": amount} for key, amount in sorted(rate.items.items())
        ],
        "mismatched": is_mismatched(rate, settings),
        "active": rate.active,
        "created_at": rate.created_at,
        "updated_at": rate.updated_at,
    }


def _checked_items(settings: BillingSettings, items: dict[str, int] | None) -> dict[str, int]:
    items = dict(items or {})
    configured = set(company.item_keys(settings))
    unknown = sorted(set(items) - configured)
    if unknown:
        raise validation_problem({"items": [f"Not an MMR item of the company: {', '.join(unknown)}."]})
    missing = sorted(configured - set(items))
    if missing:
        raise validation_problem({"items": [f"The breakdown needs every configured item: {', '.join(missing)}."]})
    return items


def _total(data: dict[str, Any], items: dict[str, int]) -> int:
    if items:
        total = sum(items.values())
        if "total" in data and data["total"] != total:
            raise validation_problem({"total": [f"The line items add up to {total}."]})
        return total
    if "total" not in data:
        raise validation_problem({"total": ["Give the total, or the line items it adds up from."]})
    return int(data["total"])


def create_rate(session: Session, data: dict[str, Any]) -> Rate:
    settings = company.settings_of(session)
    items = _checked_items(settings, data.get("items"))
    rate = Rate(name=data.get("name"), total=_total(data, items), items=items, active=data.get("active", True))
    return added(session, rate)


def get_rate(session: Session, rate_id: int) -> Rate:
    return get_or_404(session, Rate, rate_id, "rate")


def assigned_count(session: Session, rate_id: int) -> int:
    return session.scalar(select(func.count()).where(RateAssignment.rate_id == rate_id)) or 0


def update_rate(session: Session, rate: Rate, changes: dict[str, Any]) -> Rate:
    """Name and active change freely; the amounts only while no customer has the rate (make a new one)."""
    if ("items" in changes or "total" in changes) and assigned_count(session, rate.id):
        raise conflict(
            "Customers are billed this rate: its amounts cannot change. Create a new rate instead.",
            errors={"items": ["The rate is assigned to customers."]},
        )
    settings = company.settings_of(session)
    if "items" in changes or "total" in changes:
        items = _checked_items(settings, changes.get("items", rate.items))
        merged = {"total": changes["total"]} if "total" in changes else {}
        if not items and "total" not in changes:
            merged["total"] = rate.total
        rate.items = items
        rate.total = _total(merged, items)
    for name in ("name", "active"):
        if name in changes:
            setattr(rate, name, changes[name])
    return rate


@dataclass(frozen=True)
class RateQuery:
    """The picker: ``total`` (exact) or a ``total_min``/``total_max`` range, line items by ``key:amount``
    (exact) or ``key`` (present and non-zero), a name search, and whether retired or mismatched rates show."""

    q: str | None = None
    total: int | None = None
    total_min: int | None = None
    total_max: int | None = None
    lines: tuple[str, ...] = ()
    active: bool | None = True
    assignable: bool | None = None


def _matches_lines(rate: Rate, lines: tuple[str, ...]) -> bool:
    for line in lines:
        key, _, amount = line.partition(":")
        value = (rate.items or {}).get(key)
        if amount:
            if value is None or str(value) != amount:
                return False
        elif not value:
            return False
    return True


def list_rates(session: Session, query: RateQuery, page: int, per_page: int) -> tuple[Page, BillingSettings]:
    settings = company.settings_of(session)
    statement: Select[Any] = select(Rate).order_by(Rate.total, Rate.id)
    if query.q:
        pattern = query.q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        statement = statement.where(Rate.name.ilike(f"%{pattern}%", escape="\\"))
    if query.total is not None:
        statement = statement.where(Rate.total == query.total)
    if query.total_min is not None:
        statement = statement.where(Rate.total >= query.total_min)
    if query.total_max is not None:
        statement = statement.where(Rate.total <= query.total_max)
    if query.active is not None:
        statement = statement.where(Rate.active.is_(query.active))
    if not query.lines and query.assignable is None:
        return paginate(session, statement, page, per_page), settings
    # line items live in a JSON column: filtered here (a catalog holds hundreds of rates, not millions)
    rates = [
        rate
        for rate in session.scalars(statement)
        if _matches_lines(rate, query.lines)
        and (query.assignable is None or query.assignable == (not is_mismatched(rate, settings)))
    ]
    start = (page - 1) * per_page
    return Page(items=rates[start : start + per_page], page=page, per_page=per_page, total=len(rates)), settings


# --- a customer's rate -------------------------------------------------------------------------------


def assignment_of(session: Session, customer_id: int) -> RateAssignment | None:
    return session.get(RateAssignment, customer_id)


def months_remaining(assignment: RateAssignment, today: date) -> int | None:
    """Whole months left on the contract term (the badge beside the term), never below 0."""
    if assignment.contract_term_months is None or assignment.contract_start is None:
        return None
    start = assignment.contract_start
    elapsed = (today.year - start.year) * 12 + (today.month - start.month) - (1 if today.day < start.day else 0)
    return max(0, assignment.contract_term_months - max(0, elapsed))


def mismatch_refused() -> Problem:
    return conflict(
        "This rate's line items no longer match the company's MMR items: it stays on customers who have "
        "it but cannot be given to another customer.",
        errors={"rate_id": ["The rate's breakdown does not match the MMR item configuration."]},
    )


def assign_rate(session: Session, customer_id: int, data: dict[str, Any]) -> RateAssignment:
    """Gives the customer a rate (replacing the one it had) with its contract term."""
    settings = company.settings_of(session)
    rate = session.get(Rate, data["rate_id"])
    if rate is None:
        raise validation_problem({"rate_id": ["No such rate."]})
    current = assignment_of(session, customer_id)
    keeps_its_rate = current is not None and current.rate_id == rate.id
    if not keeps_its_rate:
        if not rate.active:
            raise validation_problem({"rate_id": ["The rate is retired."]})
        if is_mismatched(rate, settings):
            raise mismatch_refused()
    if current is None:
        current = RateAssignment(customer_id=customer_id, rate_id=rate.id)
        session.add(current)
    current.rate_id = rate.id
    current.a_la_carte = data.get("a_la_carte", False)
    current.contract_term_months = data.get("contract_term_months")
    current.contract_start = data.get("contract_start")
    if not keeps_its_rate:
        current.assigned_at = utcnow()
    session.flush()
    return current


def clear_rate(session: Session, customer_id: int) -> None:
    session.execute(delete(RateAssignment).where(RateAssignment.customer_id == customer_id))


def assignment_body(
    session: Session, customer_id: int, assignment: RateAssignment | None, today: date
) -> dict[str, Any]:
    settings = company.settings_of(session)
    if assignment is None:
        return {
            "customer_id": customer_id,
            "rate": None,
            "a_la_carte": False,
            "contract_term_months": None,
            "contract_start": None,
            "contract_months_remaining": None,
            "assigned_at": None,
        }
    return {
        "customer_id": customer_id,
        "rate": rate_body(get_rate(session, assignment.rate_id), settings),
        "a_la_carte": assignment.a_la_carte,
        "contract_term_months": assignment.contract_term_months,
        "contract_start": assignment.contract_start,
        "contract_months_remaining": months_remaining(assignment, today),
        "assigned_at": assignment.assigned_at,
    }
