"""The customer list and search (issue 4 "List and search"), built to stay fast at a million rows.

Search is *word-prefix*: every word of ``q`` must begin some word of the record's first or last
name, business name, DBA name, email (whole address or its domain), a phone number's digits
(whole national number or its last seven), a property account number (from the replica), or be
its id (``#123`` or a bare number). Each record's words sit in ``customer_search_terms`` with its
kind, location and sort key, so a search is a range scan of one narrow index, page 1 and its
bounded count are read from that index alone, and no ``%…%`` scan or full ``count(*)`` is needed.

Totals are exact up to :data:`EXACT_TOTAL_LIMIT`; beyond it the planner's estimate is returned
and flagged. Pages carry a keyset cursor in their ``Link`` headers, so walking deep into a list
costs the same on page 25,000 as on page 2.
"""
from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import and_, delete, false, func, insert, or_, select, tuple_
from sqlalchemy.orm import Session

from vigil_shared.errors import validation_problem

from .models import Customer, CustomerTag, PropertyAccount, SearchTerm, Tag
from .validation import fold, national_digits

EXACT_TOTAL_LIMIT = 10_000
TERM_MAX = 120
_WORD_SPLIT = re.compile(r"[^\w'@.+-]+", re.UNICODE)
_PARTS = re.compile(r"[a-z0-9]+")
_PHONE_QUERY = re.compile(r"^[\d\s().+\-]+$")
_ID_QUERY = re.compile(r"^#(\d{1,9})$")

SORTS = ("name", "-name", "created", "-created", "id", "-id")


# --- terms ----------------------------------------------------------------------------------------

def _word_terms(text: str | None) -> set[str]:
    """``O'Brien-Smith`` → ``o'brien-smith``, ``obrien-smith``, ``o``… parts of two letters or more."""
    terms: set[str] = set()
    for word in _WORD_SPLIT.split(fold(text)):
        word = word.strip(".'-+")
        if not word:
            continue
        terms.add(word)
        terms.add(word.replace("'", ""))
        for part in _PARTS.findall(word):
            if len(part) >= 2 or part.isdigit():
                terms.add(part)
    return terms


def _phone_terms(e164: str | None) -> set[str]:
    digits = national_digits(e164)
    if not digits:
        return set()
    return {digits, digits[-7:]} if len(digits) > 7 else {digits}


def _account_terms(account_number: str | None) -> set[str]:
    folded = fold(account_number)
    if not folded:
        return set()
    terms = {folded, re.sub(r"[^a-z0-9]", "", folded)}
    runs = re.findall(r"\d+", folded)
    if runs:
        terms.add(runs[-1])
    return terms


def terms_of(customer: Customer, account_numbers: list[str]) -> set[str]:
    terms: set[str] = {f"#{customer.id}"}
    for text in (customer.first_name, customer.last_name, customer.business_name, customer.dba_name):
        terms |= _word_terms(text)
    if customer.email:
        email = fold(customer.email)
        terms.add(email)
        terms.add(email.split("@")[-1])
    for e164 in (customer.primary_phone_e164, customer.work_phone_e164, customer.cell_phone_e164,
                 customer.other_phone_e164):
        terms |= _phone_terms(e164)
    for number in account_numbers:
        terms |= _account_terms(number)
    return {t[:TERM_MAX] for t in terms if t}


def reindex(session: Session, customer: Customer) -> None:
    """Rewrites the record's search terms (after a change to a searched field, kind or location)."""
    session.flush()
    accounts = session.scalars(select(PropertyAccount.account_number).where(
        PropertyAccount.customer_id == customer.id, PropertyAccount.deleted.is_(False),
        PropertyAccount.account_number.isnot(None))).all()
    session.execute(delete(SearchTerm).where(SearchTerm.customer_id == customer.id))
    rows = [{"customer_id": customer.id, "term": term, "kind": customer.kind, "location_id": customer.location_id,
             "sort_name": customer.sort_name} for term in sorted(terms_of(customer, list(accounts)))]
    if rows:
        session.execute(insert(SearchTerm), rows)


def reindex_ids(session: Session, customer_ids) -> None:
    for customer_id in set(customer_ids):
        customer = session.get(Customer, customer_id)
        if customer is not None:
            reindex(session, customer)


# --- queries --------------------------------------------------------------------------------------

def query_tokens(q: str) -> list[str]:
    """The prefixes a search looks for; a phone-looking query becomes one run of digits."""
    q = q.strip()
    if _PHONE_QUERY.match(q) and sum(ch.isdigit() for ch in q) >= 3 and not q.strip().isdigit():
        digits = "".join(ch for ch in q if ch.isdigit())
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        return [digits]
    tokens = []
    for word in _WORD_SPLIT.split(fold(q)):
        word = word.strip(".'-+")
        if word:
            tokens.append(word[:TERM_MAX])
    return tokens


def _prefix_range(column, prefix: str):
    upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
    return and_(column >= prefix, column < upper)


def _token_condition(column, token: str):
    condition = _prefix_range(column, token)
    if token.isdigit() and len(token) <= 9:
        condition = or_(condition, column == f"#{int(token)}")
    id_match = _ID_QUERY.match(token)
    if id_match:
        condition = column == f"#{int(id_match.group(1))}"
    return condition


@dataclass
class Visibility:
    """Locations whose rows the caller may list, per kind; None means every location (services)."""

    customers: frozenset[int] | None
    leads: frozenset[int] | None

    @property
    def nothing(self) -> bool:
        return self.customers == frozenset() and self.leads == frozenset()

    def condition(self, kind_col, location_col):
        if self.customers is None and self.leads is None:
            return None
        if self.customers is not None and self.customers == self.leads:
            return location_col.in_(sorted(self.customers)) if self.customers else false()

        def part(kind: str, locations):
            if locations is None:
                return kind_col == kind
            if not locations:
                return None
            return and_(kind_col == kind, location_col.in_(sorted(locations)))

        parts = [p for p in (part("customer", self.customers), part("lead", self.leads)) if p is not None]
        return or_(*parts) if parts else false()


@dataclass
class ListQuery:
    page: int = 1
    per_page: int = 20
    q: str | None = None
    sort: str = "name"
    cursor: str | None = None
    kind: str | None = None
    active: bool | None = None
    archived: str = "all"
    location_id: list[int] = field(default_factory=list)
    account_type: str | None = None
    tag: list[str] = field(default_factory=list)
    city: str | None = None
    state: str | None = None
    created_from: datetime | None = None
    created_to: datetime | None = None
    activity_from: datetime | None = None
    activity_to: datetime | None = None


@dataclass
class Result:
    rows: list[Customer]
    page: int
    per_page: int
    total: int
    estimated: bool
    next_cursor: str | None
    prev_cursor: str | None

    def body(self, items: list[dict]) -> dict:
        return {"items": items, "page": self.page, "per_page": self.per_page, "total": self.total,
                "total_estimated": self.estimated}

    def headers(self, path: str, args: dict) -> dict:
        links = []
        base = {k: v for k, v in args.items() if k not in ("cursor", "page")}
        if self.next_cursor:
            links.append(f'<{path}?{urlencode(base | {"page": self.page + 1, "cursor": self.next_cursor})}>; rel="next"')
        if self.page > 1:
            prev = base | {"page": self.page - 1}
            if self.prev_cursor:
                prev["cursor"] = self.prev_cursor
            links.append(f'<{path}?{urlencode(prev)}>; rel="prev"')
        return {"Link": ", ".join(links)} if links else {}


def _encode_cursor(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> dict:
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if payload["s"] != sort or payload["d"] not in ("next", "prev") or not isinstance(payload["k"], list):
            raise ValueError
        int(payload["p"])
        return payload
    except (ValueError, KeyError, TypeError):
        raise validation_problem({"cursor": ["Not a cursor of this list; follow the Link headers."]}) from None


def _key_columns(sort: str, on_terms: bool):
    if sort.lstrip("-") == "name":
        return (SearchTerm.sort_name, SearchTerm.customer_id) if on_terms else (Customer.sort_name, Customer.id)
    if sort.lstrip("-") == "created":
        return Customer.created_at, Customer.id
    return (Customer.id,)


def _key_of(row, sort: str) -> list:
    if sort.lstrip("-") == "name":
        return [row.sort_name, row.id]
    if sort.lstrip("-") == "created":
        return [row.created_at.isoformat(), row.id]
    return [row.id]


def _key_values(key: list, sort: str) -> list:
    if sort.lstrip("-") == "created":
        return [datetime.fromisoformat(key[0]), int(key[1])]
    if sort.lstrip("-") == "name":
        return [str(key[0]), int(key[1])]
    return [int(key[0])]


def _customer_filters(query: ListQuery, visibility: Visibility) -> list:
    conditions = []
    seen = visibility.condition(Customer.kind, Customer.location_id)
    if seen is not None:
        conditions.append(seen)
    if query.kind:
        conditions.append(Customer.kind == query.kind)
    if query.location_id:
        conditions.append(Customer.location_id.in_(query.location_id))
    if query.active is not None:
        conditions.append(Customer.active.is_(query.active))
    if query.archived == "only":
        conditions.append(Customer.archived_at.isnot(None))
    elif query.archived == "none":
        conditions.append(Customer.archived_at.is_(None))
    if query.account_type:
        conditions.append(Customer.account_type == query.account_type)
    if query.city:
        conditions.append(func.lower(Customer.city) == query.city.strip().lower())
    if query.state:
        conditions.append(Customer.state == query.state.strip().upper())
    if query.created_from:
        conditions.append(Customer.created_at >= query.created_from)
    if query.created_to:
        conditions.append(Customer.created_at < query.created_to)
    if query.activity_from:
        conditions.append(Customer.last_activity_at >= query.activity_from)
    if query.activity_to:
        conditions.append(Customer.last_activity_at < query.activity_to)
    for tag_name in query.tag:
        conditions.append(Customer.id.in_(
            select(CustomerTag.customer_id).join(Tag, Tag.id == CustomerTag.tag_id)
            .where(Tag.name_key == tag_name.strip().lower())))
    return conditions


def _needs_customer_table(query: ListQuery) -> bool:
    return any([query.active is not None, query.archived != "all", query.account_type, query.city, query.state,
                query.created_from, query.created_to, query.activity_from, query.activity_to, query.tag])


def _term_statement(query: ListQuery, visibility: Visibility, tokens: list[str]):
    """Matching (customer_id, sort_name) pairs from the terms index: every token must match a term."""
    first, rest = tokens[0], tokens[1:]
    conditions = [_token_condition(SearchTerm.term, first)]
    seen = visibility.condition(SearchTerm.kind, SearchTerm.location_id)
    if seen is not None:
        conditions.append(seen)
    if query.kind:
        conditions.append(SearchTerm.kind == query.kind)
    if query.location_id:
        conditions.append(SearchTerm.location_id.in_(query.location_id))
    for token in rest:
        other = SearchTerm.__table__.alias()
        conditions.append(SearchTerm.customer_id.in_(
            select(other.c.customer_id).where(_token_condition(other.c.term, token))))
    if _needs_customer_table(query):
        conditions.append(SearchTerm.customer_id.in_(
            select(Customer.id).where(*_customer_filters(query, Visibility(None, None)))))
    return select(SearchTerm.customer_id.label("id"), SearchTerm.sort_name.label("sort_name")) \
        .where(*conditions).distinct()


def _bounded_count(session: Session, statement) -> tuple[int, bool]:
    """Exact count up to the limit; beyond it the planner's estimate (PostgreSQL) or an exact count."""
    limited = statement.order_by(None).limit(EXACT_TOTAL_LIMIT + 1).subquery()
    counted = session.scalar(select(func.count()).select_from(limited)) or 0
    if counted <= EXACT_TOTAL_LIMIT:
        return counted, False
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        compiled = statement.order_by(None).compile(dialect=bind.dialect, compile_kwargs={"render_postcompile": True})
        plan = session.connection().exec_driver_sql("EXPLAIN (FORMAT JSON) " + str(compiled), compiled.params).scalar()
        if isinstance(plan, str):
            plan = json.loads(plan)
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        return max(estimate, EXACT_TOTAL_LIMIT + 1), True
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery())) or 0
    return total, False


def list_customers(session: Session, query: ListQuery, visibility: Visibility) -> Result:
    if query.sort not in SORTS:
        raise validation_problem({"sort": [f"One of: {', '.join(SORTS)}."]})
    tokens = query_tokens(query.q) if query.q else []
    if visibility.nothing or (query.q and not tokens):
        return Result([], query.page, query.per_page, 0, False, None, None)
    on_terms = bool(tokens) and query.sort.lstrip("-") == "name"
    if tokens and on_terms:
        base = _term_statement(query, visibility, tokens).subquery()
        key_cols = (base.c.sort_name, base.c.id)
        statement = select(base.c.id, base.c.sort_name)
        count_statement = _term_statement(query, visibility, tokens)
    else:
        conditions = _customer_filters(query, visibility)
        if tokens:
            matched = _term_statement(query, visibility, tokens).subquery()
            conditions.append(Customer.id.in_(select(matched.c.id)))
        key_cols = _key_columns(query.sort, False)
        statement = select(Customer.id, Customer.sort_name, Customer.created_at).where(*conditions)
        count_statement = select(Customer.id).where(*conditions)

    descending = query.sort.startswith("-")
    page, direction, key = query.page, "next", None
    if query.cursor:
        cursor = _decode_cursor(query.cursor, query.sort)
        page, direction, key = int(cursor["p"]), cursor["d"], _key_values(cursor["k"], query.sort)
    forward = (direction == "next") != descending  # ascending walk in key order?
    if key is not None:
        row_key = tuple_(*key_cols) if len(key_cols) > 1 else key_cols[0]
        bound = tuple_(*key) if len(key_cols) > 1 else key[0]
        statement = statement.where(row_key > bound if forward else row_key < bound)
    order = [c.asc() if forward else c.desc() for c in key_cols]
    statement = statement.order_by(*order).limit(query.per_page + 1)
    if key is None and page > 1:
        statement = statement.offset((page - 1) * query.per_page)
    fetched = session.execute(statement).all()
    has_more = len(fetched) > query.per_page
    fetched = fetched[:query.per_page]
    if direction == "prev":
        fetched.reverse()
    ids = [row.id for row in fetched]

    total, estimated = _bounded_count(session, count_statement)
    rows_by_id = {c.id: c for c in session.scalars(select(Customer).where(Customer.id.in_(ids)))} if ids else {}
    rows = [rows_by_id[i] for i in ids if i in rows_by_id]

    more_after = has_more if direction == "next" else True
    next_cursor = _encode_cursor({"s": query.sort, "d": "next", "p": page + 1, "k": _key_of(rows[-1], query.sort)}) \
        if rows and more_after else None
    prev_cursor = _encode_cursor({"s": query.sort, "d": "prev", "p": page - 1, "k": _key_of(rows[0], query.sort)}) \
        if rows and page > 1 else None
    return Result(rows, page, query.per_page, total, estimated, next_cursor, prev_cursor)


def tags_of(session: Session, customer_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Tags of several records in one query, for list items."""
    if not customer_ids:
        return {}
    found: dict[int, list[dict[str, Any]]] = {}
    rows = session.execute(select(CustomerTag.customer_id, Tag.id, Tag.name, Tag.color)
                           .join(Tag, Tag.id == CustomerTag.tag_id)
                           .where(CustomerTag.customer_id.in_(customer_ids)).order_by(Tag.name_key)).all()
    for customer_id, tag_id, name, color in rows:
        found.setdefault(customer_id, []).append({"id": tag_id, "name": name, "color": color})
    return found
