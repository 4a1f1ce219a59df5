"""The customer list and search, built to stay fast at a million rows.

Search is *word-prefix*: every word of ``q`` must begin some word of the record's first or last
name, business name, DBA name, email (whole address or its domain), a phone number's digits
(whole national number or its last seven), a property account number (from the replica), or be
its id (``#123`` or a bare number). Each record's words sit in ``customer_search_terms`` with its
kind, location and sort key, so a search is a range scan of one narrow index, page 1 and its
bounded count are read from that index alone, and no ``%…%`` scan or full ``count(*)`` is needed.
An account number's terms carry their source and match only where the caller holds
``properties.view`` (:attr:`Visibility.accounts`), a condition on the same index entries.

Totals are exact up to :data:`EXACT_TOTAL_LIMIT`; beyond it the planner's estimate is returned
and flagged. Pages carry a keyset cursor in their ``Link`` headers, so walking deep into a list
costs the same on page 25,000 as on page 2.
"""

from __future__ import annotations

import base64
import json
import re
import time
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NamedTuple, cast
from urllib.parse import urlencode

from sqlalchemy import (
    Connection,
    Table,
    and_,
    bindparam,
    delete,
    distinct,
    false,
    func,
    insert,
    or_,
    select,
    true,
    tuple_,
)
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import BindParameter

from vigil_shared.errors import validation_problem
from vigil_shared.guards import INT32_MAX

from . import registry
from .models import ACCOUNT_TERM, OWN_TERM, Customer, CustomerTag, PropertyAccount, SearchPair, SearchTerm, Tag
from .validation import fold, national_digits, searched_phone

EXACT_TOTAL_LIMIT = 10_000
NUMBERED_ROWS = EXACT_TOTAL_LIMIT  # a bare page number may skip this many records (OFFSET); deeper takes a cursor
TRUSTED_ESTIMATE = 5 * EXACT_TOTAL_LIMIT  # a planner's estimate this far beyond the limit is not counted
SMALL_RESULT = 2_000  # up to this many matching index entries, one read answers page and total
# Each word of a search is one more condition joined to the others: 100 of them (200 characters of
# one-letter words, or a few characters that fold into many, as U+FDFA folds into four words) kept a
# request and a database connection busy for seconds to minutes. Nobody searches a name with more.
MAX_WORDS = 10
HEAD = 3  # search words shorter than this match whole words only; longer ones walk the terms sharing it
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


# What each searched field of the registry gives: the words of a name, an email and its domain, a phone's digits.
WORD_FIELDS = tuple(f.name for f in registry.FIELDS if f.search == "words")
EMAIL_FIELDS = tuple(f.name for f in registry.FIELDS if f.search == "email")
PHONE_FIELDS = tuple(f.name for f in registry.FIELDS if f.search == "phone")


def own_terms(customer: Customer) -> set[str]:
    """The terms of the record's own fields (names, email, phones, ``#id``): whoever sees the record
    may find it by them."""
    terms: set[str] = {f"#{customer.id}"}
    for name in WORD_FIELDS:
        terms |= _word_terms(getattr(customer, name))
    for name in EMAIL_FIELDS:
        if getattr(customer, name):
            email = fold(getattr(customer, name))
            terms.add(email)
            terms.add(email.split("@")[-1])
    for name in PHONE_FIELDS:
        terms |= _phone_terms(getattr(customer, f"{name}_e164"))
    return {t[:TERM_MAX] for t in terms if t}


def account_terms(account_numbers: Sequence[str]) -> set[str]:
    """The terms of the record's property account numbers (the replica): a caller finds the record by
    them only where they hold ``properties.view`` (:attr:`Visibility.accounts`)."""
    terms: set[str] = set()
    for number in account_numbers:
        terms |= _account_terms(number)
    return {t[:TERM_MAX] for t in terms if t}


def terms_of(customer: Customer, account_numbers: list[str]) -> set[str]:
    return own_terms(customer) | account_terms(account_numbers)


def sourced_terms(own: set[str], accounts: set[str]) -> dict[str, int]:
    """Each term with its source: :data:`OWN_TERM` for the record's own, :data:`ACCOUNT_TERM` for an
    account number's that is not also one of its own (``1001`` of ``ACC-1001`` and of ``Unit 1001`` in
    the business name stays the record's own: it finds the record by its name)."""
    return dict.fromkeys(own, OWN_TERM) | dict.fromkeys(accounts - own, ACCOUNT_TERM)


def covered_lengths(terms: set[str] | dict[str, int]) -> dict[str, int]:
    """For each term, the length of the longest other term of the same record that prefixes it.

    ``terms`` with their sources (:func:`sourced_terms`): an own term is covered by own terms only (an
    account term may be hidden from the caller, and must not keep the name from matching), an account
    term by any other term (who sees it sees the record's own terms too). A set: all own terms."""
    sources = terms if isinstance(terms, dict) else dict.fromkeys(terms, OWN_TERM)
    own = [t for t, source in sources.items() if source == OWN_TERM]
    return {
        term: max(
            (
                len(other)
                for other in (own if source == OWN_TERM else sources)
                if other != term and term.startswith(other)
            ),
            default=0,
        )
        for term, source in sources.items()
    }


PAIRED_WORD = 4  # words of this many letters (a-z) or more are read two by two from the pair table


def pairable(term: str, covered: int) -> bool:
    """Whether a search word of :data:`PAIRED_WORD` letters or more (``a``-``z``, see
    :func:`_paired_words`) can match ``term``: its first ``max(covered + 1, PAIRED_WORD)`` characters
    are letters. A word matching a term must be longer than its ``covered`` (else the shorter term
    matches) and be the term's first characters, so such a word only matches terms that start so; a
    record's pairable terms are kept two by two in ``customer_search_pairs`` (migration 0011 derives
    the same in SQL). Four letters, not three: ``acc-0012345``-like account numbers (two terms of most
    records) would pair with every other term, 2.6 times the rows (9.6 M against 3.6 M at 1,000,000)."""
    return len(term) >= PAIRED_WORD and all("a" <= ch <= "z" for ch in term[: max(covered + 1, PAIRED_WORD)])


def reindex(session: Session, customer: Customer, *, new: bool = False) -> None:
    """Rewrites the record's search terms and pairs (after a change to a searched field, kind or location).

    ``new``: the record was just created, so it has no terms and no property accounts yet and
    neither is read (two round trips less on every create).
    """
    session.flush()
    accounts: Sequence[str | None] = []
    if not new:
        accounts = session.scalars(
            select(PropertyAccount.account_number).where(
                PropertyAccount.customer_id == customer.id,
                PropertyAccount.deleted.is_(False),
                PropertyAccount.account_number.isnot(None),
            )
        ).all()
        session.execute(delete(SearchTerm).where(SearchTerm.customer_id == customer.id))
        session.execute(delete(SearchPair).where(SearchPair.customer_id == customer.id))
    terms, pairs = search_rows(customer, [a for a in accounts if a is not None])
    # Core inserts of the tables: the ORM's bulk path cost a sixth of writing the terms
    if terms:
        session.execute(_INSERT_TERMS, terms)
    if pairs:
        session.execute(_INSERT_PAIRS, pairs)


def search_rows(customer: Customer, accounts: Sequence[str] = ()) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The search-term rows and search-pair rows of ``customer`` (with its property ``accounts``), as
    :func:`reindex` writes them. Pairs: every two :func:`pairable` terms, ``lo`` < ``hi``; a record has
    ``n (n - 1) / 2`` of its ``n`` pairable terms (names, business and DBA words, an email not starting
    with a name, a domain, account numbers starting with letters): 3 for a person with a name and an
    email, 10-15 with a business name, at most about 3,600 for 200-character business and DBA names
    made of four-letter words (the fields' lengths bound it)."""
    sources = sourced_terms(own_terms(customer), account_terms(accounts))
    covered = covered_lengths(sources)
    record = {"kind": customer.kind, "location_id": customer.location_id, "sort_name": customer.sort_name}
    ordered = sorted(covered)
    terms = [
        {
            "customer_id": customer.id,
            "term": term,
            "head": term[:HEAD],
            "covered": covered[term],
            "source": sources[term],
            **record,
        }
        for term in ordered
    ]
    paired = [term for term in ordered if pairable(term, covered[term])]
    pairs = [
        {
            "customer_id": customer.id,
            "lo": lo,
            "hi": hi,
            "lo_head": lo[:HEAD],
            "hi_head": hi[:HEAD],
            "source": max(sources[lo], sources[hi]),
            **record,
        }
        for i, lo in enumerate(paired)
        for hi in paired[i + 1 :]
    ]
    return terms, pairs


_INSERT_TERMS = insert(cast(Table, SearchTerm.__table__))
_INSERT_PAIRS = insert(cast(Table, SearchPair.__table__))


def reindex_ids(session: Session, customer_ids) -> None:
    """Re-indexes records named by an event. Each record's row is locked first, in id order, as every
    write to a record does: rewriting its terms without the lock deadlocks with a concurrent delete
    (which holds the record and waits on the terms this transaction is replacing)."""
    for customer_id in sorted(set(customer_ids)):
        customer = session.get(Customer, customer_id, with_for_update=True)
        if customer is not None:
            reindex(session, customer)


# --- queries --------------------------------------------------------------------------------------


def query_tokens(q: str) -> list[str]:
    """The prefixes a search looks for; a phone-looking query becomes one run of digits."""
    q = q.strip()
    if _PHONE_QUERY.match(q) and sum(ch.isdigit() for ch in q) >= 3:
        national = searched_phone(q)  # a whole number, normalised as stored numbers are
        if national:
            return [national]
    if _PHONE_QUERY.match(q) and sum(ch.isdigit() for ch in q) >= 3 and not q.isdigit():
        digits = "".join(ch for ch in q if ch.isdigit())  # part of a number: its digits
        if len(digits) == 11 and digits.startswith("1"):
            digits = digits[1:]
        return [digits]
    tokens: list[str] = []
    for word in _WORD_SPLIT.split(fold(q)):
        word = word.strip(".'-+")[:TERM_MAX]
        if word and word not in tokens:  # a word twice asks nothing more
            tokens.append(word)
    if len(tokens) > MAX_WORDS:
        raise validation_problem({"q": [f"At most {MAX_WORDS} different words."]})
    return tokens


def _upper(prefix: str) -> str:
    """The least string above every string starting with ``prefix``."""
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)


def _token_shape(token: str) -> tuple:
    """What decides the form of a word's condition (not its values): a ``#id``, a short or a prefix
    word, and whether a number also names a record id."""
    if _ID_QUERY.match(token):
        return ("id",)
    return ("short" if len(token) < HEAD else "prefix", token.isdigit() and len(token) <= 9)


def _token_params(token: str, i: int) -> dict[str, Any]:
    """The values :func:`_token_condition` binds for the ``i``-th word."""
    id_match = _ID_QUERY.match(token)
    if id_match:
        return {f"sq_id{i}": f"#{int(id_match.group(1))}"}
    params: dict[str, Any] = {f"sq_c{i}": list(range(len(token))), f"sq_t{i}": token}
    if len(token) >= HEAD:
        params[f"sq_u{i}"] = _upper(token)
    if token.isdigit() and len(token) <= 9:
        params[f"sq_id{i}"] = f"#{int(token)}"
    return params


def _token_condition(table, token: str, i: int = 0):
    """Terms starting with ``token`` and not covered by a shorter matching term of the same record;
    a number also matches the record id exactly (``#123``).

    Its values are named parameters (``sq_…{i}``, see :func:`_token_params`) holding this token's
    values, so a statement kept for the shape of a search can run another search of that shape.
    """
    values = _token_params(token, i)

    def bound(name: str, *, expanding: bool = False):
        return bindparam(f"{name}{i}", values[f"{name}{i}"], expanding=expanding)

    if _ID_QUERY.match(token):
        return and_(table.c.covered == 0, table.c.term == bound("sq_id"))
    if len(token) < HEAD:
        condition = and_(table.c.covered.in_(bound("sq_c", expanding=True)), table.c.term == bound("sq_t"))
    else:
        condition = and_(
            table.c.covered.in_(bound("sq_c", expanding=True)),
            table.c.term >= bound("sq_t"),
            table.c.term < bound("sq_u"),
        )
    if token.isdigit() and len(token) <= 9:
        condition = or_(condition, and_(table.c.covered == 0, table.c.term == bound("sq_id")))
    return condition


ALL_ACCOUNTS, NO_ACCOUNTS, SOME_ACCOUNTS = "all", "none", "some"  # Visibility.account_mode


@dataclass
class Visibility:
    """Locations whose rows the caller may list, per kind; None means every location (services).

    ``accounts``: the locations where a property account number finds a record (the caller's
    ``properties.view``); None, every location. Elsewhere only the record's own terms match
    (:data:`~vigil_customer.models.OWN_TERM`): a caller who may not see properties there would
    otherwise learn which customer holds account number X by searching for it."""

    customers: frozenset[int] | None
    leads: frozenset[int] | None
    accounts: frozenset[int] | None = None

    @property
    def nothing(self) -> bool:
        return self.customers == frozenset() and self.leads == frozenset()

    def within(self, locations: frozenset[int] | None) -> Visibility:
        """Only the rows of ``locations`` too (None: no narrowing). A filter on something seen by its
        own permission (a tag: ``tags.view``) may only pick among the rows where the caller sees it:
        a record it leaves out elsewhere would tell what that record carries."""
        if locations is None:
            return self

        def narrowed(seen: frozenset[int] | None) -> frozenset[int]:
            return locations if seen is None else seen & locations

        return Visibility(narrowed(self.customers), narrowed(self.leads), self.accounts)

    def _seen(self) -> frozenset[int] | None:
        """Every location whose rows are listed (None: every location)."""
        if self.customers is None or self.leads is None:
            return None
        return self.customers | self.leads

    def account_mode(self) -> str:
        """:data:`ALL_ACCOUNTS` when account numbers match wherever rows are listed (no condition: the
        common case, a role that sees customers sees their properties), :data:`NO_ACCOUNTS` when they
        match nowhere listed (own terms only), else :data:`SOME_ACCOUNTS`."""
        seen = self._seen()
        if self.accounts is None or (seen is not None and seen <= self.accounts):
            return ALL_ACCOUNTS
        if not self.accounts or (seen is not None and not seen & self.accounts):
            return NO_ACCOUNTS
        return SOME_ACCOUNTS

    def _account_locations(self) -> list[int]:
        seen, accounts = self._seen(), self.accounts or frozenset()
        return sorted(accounts if seen is None else accounts & seen)

    def account_condition(self, source_col, location_col, name: str):
        """Rows of an account term only where ``accounts`` reaches (None: no condition). ``name``: the
        location list's named parameter (for a kept statement). Both columns are in the term and pair
        indexes, so the scans stay index-only; the list is a value, not a shape (:meth:`shape`)."""
        mode = self.account_mode()
        if mode == ALL_ACCOUNTS:
            return None
        own = source_col == OWN_TERM
        if mode == NO_ACCOUNTS:
            return own
        return or_(own, location_col.in_(bindparam(name, self._account_locations(), expanding=True)))

    def shape(self) -> tuple:
        """What decides the form of :meth:`condition` and :meth:`account_condition` (their location
        lists are values)."""
        c, leads = self.customers, self.leads
        return (c is None, leads is None, c is not None and c == leads, bool(c), bool(leads), self.account_mode())

    def params(self, names: tuple[str, str], accounts: str | None = None) -> dict[str, list[int]]:
        """The location lists :meth:`condition` binds under ``names`` (customers, leads), and
        :meth:`account_condition` under ``accounts``."""
        values = {
            name: sorted(locations)
            for name, locations in zip(names, (self.customers, self.leads), strict=True)
            if locations
        }
        if accounts is not None and self.account_mode() == SOME_ACCOUNTS:
            values[accounts] = self._account_locations()
        return values

    def condition(self, kind_col, location_col, names: tuple[str, str] | None = None):
        """``names``: the location lists become these named parameters (for a kept statement)."""
        if self.customers is None and self.leads is None:
            return None

        def within(locations, name_index: int):
            if names is None:
                return location_col.in_(sorted(locations))
            return location_col.in_(bindparam(names[name_index], sorted(locations), expanding=True))

        if self.customers is not None and self.customers == self.leads:
            return within(self.customers, 0) if self.customers else false()

        def part(kind: str, locations, name_index: int):
            if locations is None:
                return kind_col == kind
            if not locations:
                return None
            return and_(kind_col == kind, within(locations, name_index))

        parts = [p for p in (part("customer", self.customers, 0), part("lead", self.leads, 1)) if p is not None]
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
    # the parent picker: top-level customers other than this one (a flat two-level hierarchy)
    parent_candidates_for: int | None = None


@dataclass
class Result:
    rows: list[Any]  # rows of the listed columns (``id``, names… ``sort_name``, ``created_at``)
    page: int
    per_page: int
    total: int
    estimated: bool
    next_cursor: str | None
    prev_cursor: str | None
    # each listed record's tags (id, name, color by name), read with its row: no round trip of their own
    tags: dict[int, list[dict[str, Any]]] = field(default_factory=dict)

    def body(self, items: list[dict]) -> dict:
        return {
            "items": items,
            "page": self.page,
            "per_page": self.per_page,
            "total": self.total,
            "total_estimated": self.estimated,
        }

    def headers(self, path: str, args: dict) -> dict:
        links = []
        base = {k: v for k, v in args.items() if k not in ("cursor", "page")}
        if self.next_cursor:
            following = base | {"page": self.page + 1, "cursor": self.next_cursor}
            links.append(f'<{path}?{urlencode(following)}>; rel="next"')
        if self.page > 1:
            prev = base | {"page": self.page - 1}
            if self.prev_cursor:
                prev["cursor"] = self.prev_cursor
            links.append(f'<{path}?{urlencode(prev)}>; rel="prev"')
        return {"Link": ", ".join(links)} if links else {}


def _encode_cursor(payload: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(payload, separators=(",", ":")).encode()).decode().rstrip("=")


def _decode_cursor(cursor: str, sort: str) -> dict:
    """The cursor's payload, its sort key already parsed (``payload["k"]``): anything a client made
    up (a key of the wrong length or type, a page out of range) is the same 422 as garbage."""
    try:
        payload = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if payload["s"] != sort or payload["d"] not in ("next", "prev") or not isinstance(payload["k"], list):
            raise ValueError
        if not isinstance(payload["p"], int) or not 1 <= payload["p"] <= INT32_MAX:
            raise ValueError
        payload["k"] = _key_values(payload["k"], sort)
        return payload
    except (ValueError, KeyError, TypeError, IndexError, AttributeError):
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
    """A cursor's key as the columns hold it; ValueError when it is not one this list made."""
    if len(key) != (1 if sort.lstrip("-") == "id" else 2):
        raise ValueError("a key of another length")
    if sort.lstrip("-") == "created":
        values = [datetime.fromisoformat(key[0]), key[1]]
    elif sort.lstrip("-") == "name":
        if not isinstance(key[0], str):
            raise ValueError("a name key is text")
        values = [key[0], key[1]]
    else:
        values = [key[0]]
    if not isinstance(values[-1], int) or isinstance(values[-1], bool) or not 0 <= values[-1] <= INT32_MAX:
        raise ValueError("an id is an integer in the id columns' range")
    return values


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
    if query.parent_candidates_for is not None:
        conditions.append(Customer.parent_customer_id.is_(None))
        conditions.append(Customer.id != query.parent_candidates_for)
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
    for tag_name in dict.fromkeys(name.strip().lower() for name in query.tag):  # a tag twice asks nothing more
        conditions.append(
            Customer.id.in_(
                select(CustomerTag.customer_id)
                .join(Tag, Tag.id == CustomerTag.tag_id)
                .where(Tag.name_key == tag_name.strip().lower())
            )
        )
    return conditions


def _needs_customer_table(query: ListQuery) -> bool:
    return any(
        [
            query.active is not None,
            query.archived != "all",
            query.parent_candidates_for is not None,
            query.account_type,
            query.city,
            query.state,
            query.created_from,
            query.created_to,
            query.activity_from,
            query.activity_to,
            query.tag,
        ]
    )


def _walkable(token: str) -> bool:
    return len(token) >= HEAD and not token.isdigit() and not _ID_QUERY.match(token)


def _term_statement(query: ListQuery, visibility: Visibility, tokens: list[str], *, walk: bool = False):
    """``(id, sort_name)`` of the records matching every word of the search.

    One word: its matching term rows. A record can match through several of its terms (``john``
    in the first name and ``johnson`` as the last), so rows may repeat; callers deduplicate.
    Several words: the first word's rows whose record is among each other word's matches (a
    semi-join on the record id, every side read from the match index alone; rows may repeat as
    for one word). It was an ``INTERSECT`` of ``(id, sort_name)`` rows, which costs the same
    whatever the planner guesses, but hashing the text keys was a third of a common full name
    (``james smith``: 19.6 against 12.6 ms p50 for the statement alone, 1,000,000 customers, the
    same sitting); with a rare word the planner starts from it (``bench/bench_customer_search.py``).
    When the first two words are letters (:func:`_paired_words`), the records holding both are one
    range of the pair table instead (``james smith``: 126 entries against 23,000 for the semi-join),
    further words joined as above; its rows may repeat a record too.

    With ``walk``, the first word is matched through the terms sharing its first three
    characters, which the walk index keeps in name order (the prefix test is written so that
    only that index can serve it); the other words then filter those rows.
    """

    def scoped(table, condition, i: int):
        conditions = [condition]
        seen = visibility.condition(table.c.kind, table.c.location_id, (f"sq_vc{i}", f"sq_vl{i}"))
        if seen is not None:
            conditions.append(seen)
        accounts = visibility.account_condition(table.c.source, table.c.location_id, f"sq_va{i}")
        if accounts is not None:
            conditions.append(accounts)
        if query.kind:
            conditions.append(table.c.kind == bindparam(f"sq_k{i}", query.kind))
        if query.location_id:
            conditions.append(table.c.location_id.in_(bindparam(f"sq_l{i}", list(query.location_id), expanding=True)))
        if _needs_customer_table(query):  # (its values are not named: such a search is never kept)
            conditions.append(
                table.c.customer_id.in_(select(Customer.id).where(*_customer_filters(query, Visibility(None, None))))
            )
        return select(table.c.customer_id.label("id"), table.c.sort_name.label("sort_name")).where(*conditions)

    terms = SearchTerm.__table__
    first, rest = tokens[0], tokens[1:]
    if walk:
        statement = scoped(
            terms,
            and_(
                terms.c.head == bindparam("sq_head", first[:HEAD]),
                terms.c.covered < bindparam("sq_n", len(first)),
                func.substr(terms.c.term, 1, bindparam("sq_n2", len(first))) == bindparam("sq_first", first),
            ),
            0,
        )
        for i, token in enumerate(rest, 1):
            other = terms.alias()
            # (the record's location is the first word's: only the account terms' condition repeats)
            accounts = visibility.account_condition(other.c.source, other.c.location_id, f"sq_va{i}")
            matched = _token_condition(other, token, i)
            statement = statement.where(
                terms.c.customer_id.in_(
                    select(other.c.customer_id).where(matched if accounts is None else and_(matched, accounts))
                )
            )
        return statement
    paired = _paired_words(tokens)
    if paired is not None:  # the first two words from the pair table: one range of one index
        pairs, (lo, hi) = SearchPair.__table__, paired
        statement = scoped(
            pairs,
            and_(
                pairs.c.lo_head == bindparam("sq_plh", lo[:HEAD]),
                pairs.c.hi_head == bindparam("sq_phh", hi[:HEAD]),
                pairs.c.lo >= bindparam("sq_plo", lo),
                pairs.c.lo < bindparam("sq_plu", _upper(lo)),
                pairs.c.hi >= bindparam("sq_phi", hi),
                pairs.c.hi < bindparam("sq_phu", _upper(hi)),
            ),
            0,
        )
        for i, token in enumerate(tokens[2:], 2):
            other = terms.alias()
            statement = statement.where(
                pairs.c.customer_id.in_(
                    scoped(other, _token_condition(other, token, i), i).with_only_columns(other.c.customer_id)
                )
            )
        return statement
    statement = scoped(terms, _token_condition(terms, first, 0), 0)
    for i, token in enumerate(rest, 1):
        other = terms.alias()
        statement = statement.where(
            terms.c.customer_id.in_(
                scoped(other, _token_condition(other, token, i), i).with_only_columns(other.c.customer_id)
            )
        )
    return statement


_PAIR_WORD = re.compile(rf"^[a-z]{{{PAIRED_WORD},}}$")


def _paired_words(tokens: list[str]) -> tuple[str, str] | None:
    """The search's first two words, lower first, when the records holding both are read from the pair
    table (``customer_search_pairs``): both of :data:`PAIRED_WORD` letters or more (``a``-``z``), neither starting the
    other (so no one term matches both, and every term the lower matches sorts before every term the
    higher matches, as ``lo`` before ``hi``). Otherwise, None: the words' ranges of the term table are
    joined. A record holds both words exactly when it holds a pair of them: each word matches one of
    the record's :func:`pairable` terms if it matches any (the shortest term it starts)."""
    if len(tokens) < 2:
        return None
    a, b = tokens[0], tokens[1]
    if not (_PAIR_WORD.match(a) and _PAIR_WORD.match(b)) or a.startswith(b) or b.startswith(a):
        return None
    return (a, b) if a < b else (b, a)


def _term_params(query: ListQuery, visibility: Visibility, tokens: list[str]) -> dict[str, Any]:
    """Every value :func:`_term_statement` names, for this search (walk or not)."""
    first = tokens[0]
    params: dict[str, Any] = {"sq_head": first[:HEAD], "sq_n": len(first), "sq_n2": len(first), "sq_first": first}
    paired = _paired_words(tokens)
    if paired is not None:
        lo, hi = paired
        params |= {"sq_plh": lo[:HEAD], "sq_phh": hi[:HEAD], "sq_plo": lo, "sq_plu": _upper(lo)}
        params |= {"sq_phi": hi, "sq_phu": _upper(hi)}
    for i, token in enumerate(tokens):
        params |= _token_params(token, i)
        params |= visibility.params((f"sq_vc{i}", f"sq_vl{i}"), f"sq_va{i}")
        if query.kind:
            params[f"sq_k{i}"] = query.kind
        if query.location_id:
            params[f"sq_l{i}"] = list(query.location_id)
    return params


class _Kept:
    """The statements of one shape of search (words and their kinds, scope, filters), built once.

    Building them (the semi-join of each word, its scope, term ranges, the derived count and page
    statements) cost more Python than the database spent on a common full name (``james smith``:
    4.9 ms of CPU a search under load), so a search of a known shape only binds its values
    (:func:`_term_params`) to statements kept here. ``params`` is empty when the statements were built
    for this very search (their parameters already hold its values).
    """

    __slots__ = ("matches", "derived", "build_walk")

    def __init__(self, matches, build_walk):
        self.matches = matches
        self.build_walk = build_walk
        self.derived: dict[Any, Any] = {}

    def get(self, name, build):
        statement = self.derived.get(name)
        if statement is None:
            statement = self.derived[name] = build()
        return statement


# by shape (see _shape_of): the search's statements (a search filtered on the record's own columns is not kept)
_KEPT: dict[tuple, _Kept] = {}
_KEPT_SHAPES = 256


def _shape_of(query: ListQuery, visibility: Visibility, tokens: list[str]) -> tuple | None:
    if _needs_customer_table(query):
        return None
    return (
        tuple(_token_shape(t) for t in tokens),
        visibility.shape(),
        bool(query.kind),
        bool(query.location_id),
        _walkable(tokens[0]),
        _paired_words(tokens) is not None,
    )


def _kept_search(query: ListQuery, visibility: Visibility, tokens: list[str]) -> tuple[_Kept, dict[str, Any]]:
    """The statements of this search's shape and the values to bind to them."""
    shape = _shape_of(query, visibility, tokens)
    kept = _KEPT.get(shape) if shape is not None else None
    if kept is not None:
        return kept, _term_params(query, visibility, tokens)
    kept = _Kept(
        _term_statement(query, visibility, tokens),
        lambda: _term_statement(query, visibility, tokens, walk=True),
    )
    if shape is not None:
        if len(_KEPT) >= _KEPT_SHAPES:
            _KEPT.clear()
        _KEPT[shape] = kept
    return kept, {}


ESTIMATE_SECONDS = 30.0  # how long a planner estimate is reused (it moves only when ANALYZE runs)
# per engine, (SQL, parameters): (when, rows)
_ESTIMATES: weakref.WeakKeyDictionary[Any, dict[tuple, tuple[float, int]]] = weakref.WeakKeyDictionary()
_ESTIMATES_KEPT = 512


def _estimate(
    conn: Connection, statement, key: tuple | None = None, values: dict[str, Any] | None = None
) -> int | None:
    """The planner's row estimate (PostgreSQL); None where the database has none.

    The estimate comes from the table's statistics, which change only when the table is analysed,
    so the answer for one statement and its parameters is reused for :data:`ESTIMATE_SECONDS`
    (page 1 of an office's list asked for it on every request: a round trip and an EXPLAIN).
    ``key``: what alone determines the statement, when the caller knows (then it is not compiled
    to be looked up); otherwise its SQL and parameters. ``values``: named parameters to bind in
    place of those the statement holds (a kept search's).
    """
    bind = conn.engine  # per engine, not per connection: the estimate is the table's
    if bind.dialect.name != "postgresql":
        return None
    estimates = _ESTIMATES.setdefault(bind, {})
    now = time.monotonic()
    known = estimates.get(key) if key is not None else None
    if known is not None and now - known[0] < ESTIMATE_SECONDS:
        return known[1]
    if values:
        expanded = statement.compile(dialect=bind.dialect).construct_expanded_state(values)
        sql, params = expanded.statement, dict(expanded.parameters)
    else:
        compiled = statement.compile(dialect=bind.dialect, compile_kwargs={"render_postcompile": True})
        sql, params = str(compiled), compiled.params
    if key is None:
        key = (sql, repr(sorted(params.items())))
        known = estimates.get(key)
        if known is not None and now - known[0] < ESTIMATE_SECONDS:
            return known[1]
    plan = conn.exec_driver_sql("EXPLAIN (FORMAT JSON) " + sql, params).scalar()
    if isinstance(plan, str):
        plan = json.loads(plan)
    assert plan is not None, "EXPLAIN answers one row"
    rows = int(plan[0]["Plan"]["Plan Rows"])
    if len(estimates) >= _ESTIMATES_KEPT:
        estimates.clear()
    estimates[key] = (now, rows)
    return rows


def _bounded_count(conn: Connection, statement, *, plain: tuple | None = None) -> tuple[int, bool]:
    """Rows of ``statement`` (one per record): exact up to the limit, then an estimate (exact on SQLite).

    ``plain`` (what the filters are made of) says the statement filters on kind and location only,
    columns whose statistics make PostgreSQL's estimate close: when it is far beyond the limit (page
    1 of a big office), the estimate is the answer and the 10,001 index entries are not counted.
    """
    statement = statement.order_by(None)
    if plain is not None:
        estimate = _estimate(conn, statement, ("plain", *plain))
        if estimate is not None and estimate >= TRUSTED_ESTIMATE:
            return estimate, True
    limited = statement.limit(EXACT_TOTAL_LIMIT + 1).subquery()
    counted = conn.scalar(select(func.count()).select_from(limited)) or 0
    if counted <= EXACT_TOTAL_LIMIT:
        return counted, False
    estimate = _estimate(conn, statement)
    if estimate is not None:
        return max(estimate, EXACT_TOTAL_LIMIT + 1), True
    return conn.scalar(select(func.count()).select_from(statement.subquery())) or 0, False


def _FIRST_COUNT_CAP() -> int:
    """The first bound of :func:`_term_count` (a function: tests lower the limit)."""
    return EXACT_TOTAL_LIMIT * 11 // 10


def _term_count(
    conn: Connection, kept: _Kept, params: dict[str, Any], first: tuple[int, int] | None = None
) -> tuple[int, bool]:
    """Distinct records among matching term rows, reading a bounded number of index entries.

    Up to the limit the count is exact. Covered terms are skipped, so a record rarely matches
    twice; when some do and the first read hit the limit, a longer read may still find the exact
    total. Beyond that, the planner's estimate, flagged. ``params``: the search's values (``kept``).
    """
    matches = kept.matches.order_by(None)

    def sampled(cap: int):
        sample = matches.limit(cap).subquery()
        return select(func.count(), func.count(distinct(sample.c.id)))

    for cap in (_FIRST_COUNT_CAP(), 4 * EXACT_TOTAL_LIMIT):
        if first is not None and cap == _FIRST_COUNT_CAP():  # read by page 1's statement (_first_page)
            rows, records = first
        else:
            rows, records = conn.execute(kept.get(("count", cap), lambda: sampled(cap)), params).one()  # noqa: B023
        if rows < cap:
            return records, False
        if records > EXACT_TOTAL_LIMIT:  # already more records than the limit
            break
    distinct_matches = kept.get("distinct", lambda: select(matches.subquery().c.id).distinct())
    # known by the kept statement and the search's values: a reused estimate is not compiled to be looked up
    known = (distinct_matches, *sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items()))
    estimate = _estimate(conn, distinct_matches, known if params else None, values=params)
    if estimate is not None:
        return max(estimate, EXACT_TOTAL_LIMIT + 1), True
    return conn.scalar(select(func.count()).select_from(distinct_matches.subquery()), params) or 0, False


def _ordered(kept: _Kept, tokens: list[str]):
    """The statement whose rows in name order are the search's records in name order: the walk of the
    first word's terms when it can be walked (the walk index keeps them in that order), else the matches."""
    return kept.get("walk", kept.build_walk) if _walkable(tokens[0]) else kept.matches


def _first_rows(conn: Connection, statement, want: int, kept: _Kept, params: dict[str, Any]) -> list:
    """The first ``want`` distinct records of an ordered statement whose rows may repeat a record.

    Repeats are adjacent (same sort key), so a few extra rows are read and folded; this lets the
    database run a top-N sort straight off the index instead of de-duplicating every match.
    ``kept`` keeps the limited statement by (``statement``, limit); ``params`` binds the search's values.
    """
    fetch = want * 2
    while True:
        limited = kept.get((statement, fetch), lambda: statement.limit(fetch))  # noqa: B023
        rows = conn.execute(limited, params).all()
        unique, last = [], None
        for row in rows:
            if row.id != last:
                unique.append(row)
                last = row.id
        if len(unique) >= want or len(rows) < fetch:
            return unique[:want]
        fetch *= 4


# The columns a list item shows, and the sort keys its cursors carry: a page reads no other column,
# as plain rows (building twenty ORM objects cost a fifth of a page's CPU).
_LISTED = [
    getattr(Customer, name)
    for name in dict.fromkeys((*registry.output_fields(listed_only=True), "sort_name", "created_at"))
]


class _Match(NamedTuple):
    id: int
    sort_name: str


def _small_result(
    conn: Connection, kept: _Kept, params: dict[str, Any], key, forward: bool, want: int, multi_word: bool
) -> tuple[list, int] | None:
    """All matches at once when there are few: one read gives the page and the exact total (a page after
    a cursor; page 1 is :func:`_first_page`, which also reads the listed columns in the same statement).

    Most searches (a name and a surname, an email, a phone number, an account) match a handful of
    records; reading them unordered and sorting here spares a second pass over the index.
    Returns None when the matches are too many for that.
    """
    matches = kept.matches
    if multi_word:  # the join of several words is the costly part: read once, at most the threshold
        small = kept.get("small", lambda: matches.order_by(None).limit(bindparam("sq_small", SMALL_RESULT)))
        rows = conn.execute(small, params | {"sq_small": SMALL_RESULT}).all()
        if len(rows) >= SMALL_RESULT:
            return None
    else:  # one word: count a bounded range first, it costs less than fetching a large one
        sample = kept.get(
            "small count",
            lambda: select(func.count()).select_from(
                matches.order_by(None).limit(bindparam("sq_small", SMALL_RESULT)).subquery()
            ),
        )
        if (conn.scalar(sample, params | {"sq_small": SMALL_RESULT}) or 0) >= SMALL_RESULT:
            return None
        rows = conn.execute(matches, params).all()
    found = sorted(
        {_Match(row.id, row.sort_name) for row in rows}, key=lambda m: (m.sort_name, m.id), reverse=not forward
    )
    total = len(found)
    if key is not None:
        bound = (key[0], key[1])
        found = [m for m in found if ((m.sort_name, m.id) > bound if forward else (m.sort_name, m.id) < bound)]
    return found[:want], total


FEW, MANY, WALK = "few", "many", "walk"  # the forms of page 1's statement (_first_page_statement)


def _first_page_statement(matches, ordered, forward: bool, form: str):
    """Page 1 of a search in one statement, its listed rows joined to their tags. The limits are
    parameters (``sq_small``, ``sq_cap``, ``sq_want``, ``sq_fetch``), bound when it runs: it is kept.

    - :data:`FEW`: the matches (at most ``sq_cap`` rows, unordered, from the match index alone) are
      read once; their rows and distinct records are counted, and when they are fewer than
      ``sq_small`` the first ``want`` records in name order are the page (otherwise no page: a
      one-time filter, the page's part is not read).
    - :data:`MANY`: the same counts, and the page is the first ``want`` distinct records of the first
      ``sq_fetch`` entries of ``ordered`` (the ordered walk: a name-order index read that stops there).
      Right whatever the result's size, but a small result reads more of the walk index than its matches.
    - :data:`WALK`: that page alone, no count (after a :data:`FEW` statement found the result large).

    With ``sq_cap`` the first bound of :func:`_term_count`, a large result's first count is this
    statement's. A search with no match still answers one row (the counts, the rest NULL).

    One statement holding both pages (a ``UNION ALL`` of the few and the walked records, each gated by
    the count) was tried: one round trip whatever the size, but PostgreSQL plans a small result's
    statement on every run (its generic plan looks costlier than the custom ones), and planning the
    walk's branch too cost 0.3-1.0 ms more per small search (the most common kind), so the form is chosen
    by what the same search found last time (:func:`_first_page`).
    """
    small: BindParameter[int] = bindparam("sq_small", SMALL_RESULT)
    want: BindParameter[int] = bindparam("sq_want", 21)

    def first_records(rows, name: str):
        """The first ``want`` distinct records of ``rows`` in the page's order."""
        records = select(rows.c.id, rows.c.sort_name).distinct().subquery(f"{name}_records")
        order = (records.c.sort_name, records.c.id)
        return (
            select(records.c.id.label("sq_id"), records.c.sort_name.label("sq_order"))
            .order_by(*[c.asc() if forward else c.desc() for c in order])
            .limit(want)
            .subquery(name)
        )

    # counted in one pass, not materialized: a CTE of 11,000 rows read three times cost more than
    # the separate count did (6.3 against 4.2 ms for `smi`, EXPLAIN ANALYZE)
    counted = matches.order_by(None).limit(bindparam("sq_cap", SMALL_RESULT)).subquery("sq_counted")
    counts = select(func.count().label("sq_read"), func.count(distinct(counted.c.id)).label("sq_total")).cte(
        "sq_counts"
    )
    if form == FEW:  # all the matches (the match index, unordered), their records sorted, when few
        few = matches.order_by(None).where(select(counts.c.sq_read).scalar_subquery() < small).limit(small)
        first = first_records(few.subquery("sq_found"), "sq_first")
    else:  # the walk's first entries, already in the page's order
        keys = (ordered.selected_columns.sort_name, ordered.selected_columns.id)
        walked = ordered.order_by(*[c.asc() if forward else c.desc() for c in keys]).limit(bindparam("sq_fetch", 42))
        first = first_records(walked.subquery("sq_walked"), "sq_first")
    page = (
        select(first.c.sq_order, *_LISTED, *_TAG_COLUMNS, Tag.name_key.label("tag_key"))
        .select_from(
            first.join(cast(Table, Customer.__table__), Customer.id == first.c.sq_id).outerjoin(
                _TAGGED, CustomerTag.customer_id == Customer.id
            )
        )
        .subquery("sq_page")
    )
    page_keys = (page.c.sq_order, page.c.id)
    listed = [c for c in page.c if c.key not in ("sq_order", "tag_key")]
    statement = (
        select(*listed)
        if form == WALK
        else select(counts.c.sq_read, counts.c.sq_total, *listed).select_from(counts.outerjoin(page, true()))
    )
    return statement.order_by(*[k.asc() if forward else k.desc() for k in page_keys], page.c.tag_key)


class _PageOne(NamedTuple):
    rows: list | None  # the page's listed rows (look-ahead row included), or None: read it otherwise
    first_count: tuple[int, int] | None  # the first count of _term_count, when it was read as that is
    total: int | None  # the exact total, when the matches were few


# Searches (by words, scope and filters) whose page 1 last found many matches: their next page 1 reads
# the walk with the count (:data:`MANY`, one round trip) instead of the sorted small result (:data:`FEW`).
_LARGE: dict[tuple, bool] = {}
_LARGE_KEPT = 4096


def _first_page(
    conn: Connection,
    kept: _Kept,
    ordered,
    params: dict[str, Any],
    forward: bool,
    want: int,
    tags: dict,
    known: tuple | None,
) -> _PageOne:
    """Page 1 of a search (:func:`_first_page_statement`): its listed rows, their tags into ``tags``,
    and the index entries it read with their distinct records: with few matches, the exact total;
    with many, the first count of :func:`_term_count` (entries read up to its first bound; None when
    that bound is below :data:`SMALL_RESULT`, only where a test lowers the limit). ``ordered``: builds
    the ordered walk of this search (when a kept statement is first built). ``known``: what identifies
    this search (its words, scope and filters), or None when it is not kept.

    One round trip for a small result, and for a large one found large the last time (:data:`MANY`);
    a large result not known as such is two (:data:`FEW`, then :data:`WALK`), and is remembered. The
    rows are None when a large result's walked entries held fewer than ``want`` records and more match
    (a record matching through many terms): the caller walks further."""
    cap = max(SMALL_RESULT, _FIRST_COUNT_CAP())
    values = {"sq_small": SMALL_RESULT, "sq_cap": cap, "sq_want": want, "sq_fetch": 2 * want}
    form = MANY if known is not None and known in _LARGE else FEW

    def statement(form: str):
        return kept.get(
            ("first page", forward, form), lambda: _first_page_statement(kept.matches, ordered(), forward, form)
        )

    rows = conn.execute(statement(form), params | values).all()
    read, records = rows[0].sq_read, rows[0].sq_total
    # the first count of _term_count, when this read was bounded as that count is (SMALL_RESULT below it)
    counted = (read, records) if cap == _FIRST_COUNT_CAP() else None
    if known is not None:
        if read >= SMALL_RESULT and form == FEW:
            if len(_LARGE) >= _LARGE_KEPT:
                _LARGE.clear()
            _LARGE[known] = True
        elif read < SMALL_RESULT and form == MANY:
            _LARGE.pop(known, None)
    if form == FEW and read >= SMALL_RESULT:  # no page read: the walk's first entries, a round trip more
        rows = conn.execute(statement(WALK), params | values).all()
    found: dict[int, list[dict[str, Any]]] = {}
    listed = _fold_tags([row for row in rows if row.id is not None], found)
    # fewer records than the page holds: all of them (every match counted), or the walked entries
    # repeated records (one matching through many terms) and _first_rows reads further
    if len(listed) < want and not (read < cap and len(listed) == records):
        return _PageOne(None, counted, None)
    tags.update(found)
    if read < SMALL_RESULT:
        return _PageOne(listed, (read, records), records)
    return _PageOne(listed, counted, None)


# A page's rows come with their tags in the same statement (a round trip of their own before): one row per
# (record, tag), a record without tags once with empty tag columns, in the page's order then by tag name.
_TAG_COLUMNS = (Tag.id.label("tag_id"), Tag.name.label("tag_name"), Tag.color.label("tag_color"))
_TAGGED = cast(Table, CustomerTag.__table__).join(cast(Table, Tag.__table__), Tag.id == CustomerTag.tag_id)


def _with_tags(page, key_cols, forward: bool):
    """``page`` (its listed columns, ordered and limited) with each row's tags beside it."""
    rows = page.subquery()
    keys = [rows.c[column.key] for column in key_cols]
    return (
        select(rows, *_TAG_COLUMNS)
        .select_from(rows.outerjoin(_TAGGED, CustomerTag.customer_id == rows.c.id))
        .order_by(*[k.asc() if forward else k.desc() for k in keys], Tag.name_key)
    )


# the listed columns of the records a search or a page number found, with their tags (built once)
_LISTED_WITH_TAGS = (
    select(*_LISTED, *_TAG_COLUMNS)
    .select_from(cast(Table, Customer.__table__).outerjoin(_TAGGED, CustomerTag.customer_id == Customer.id))
    .where(Customer.id.in_(bindparam("ids", expanding=True)))
    .order_by(Customer.id, Tag.name_key)
)


def _fold_tags(rows, tags: dict[int, list[dict[str, Any]]]) -> list:
    """One row per record from rows repeated per tag (a record's rows are adjacent); its tags into ``tags``."""
    unique, last = [], None
    for row in rows:
        if row.id != last:
            unique.append(row)
            last = row.id
            tags[row.id] = []
        if row.tag_id is not None:
            tags[row.id].append({"id": row.tag_id, "name": row.tag_name, "color": row.tag_color})
    return unique


# Page 1 of a list filtered by kind and location only (the list as it opens), by (filters, sort, size):
# its page statement and count statement, built once (composing them was a tenth of the page's CPU).
_FIRST_PAGES: dict[tuple, tuple[Any, Any]] = {}
_FIRST_PAGES_KEPT = 256


def list_customers(conn: Connection, query: ListQuery, visibility: Visibility) -> Result:
    """A page of the list (and its bounded total), read on ``conn`` with Core statements only.

    A Core connection rather than a session: the list's statements are reads, and the list view runs
    them on an autocommit connection (``Database.read``: no liveness probe, ``BEGIN`` or ``ROLLBACK``
    round trips, no ORM execution layer). A caller inside a transaction passes ``session.connection()``.
    """
    if query.sort not in SORTS:
        raise validation_problem({"sort": [f"One of: {', '.join(SORTS)}."]})
    tokens = query_tokens(query.q) if query.q else []
    if visibility.nothing or (query.q and not tokens):
        return Result([], query.page, query.per_page, 0, False, None, None)

    descending = query.sort.startswith("-")
    page, direction, key = query.page, "next", None
    if query.cursor:
        cursor = _decode_cursor(query.cursor, query.sort)
        page, direction, key = cursor["p"], cursor["d"], cursor["k"]
    forward = (direction == "next") != descending  # walking the key order upwards?
    jump = key is None and page > 1  # a bare page number: OFFSET over distinct records
    if jump and (page - 1) * query.per_page >= NUMBERED_ROWS:
        raise validation_problem(
            {
                "page": [
                    f"Page numbers reach the first {NUMBERED_ROWS:,} records; beyond, follow the Link "
                    "headers (their keyset cursor reads any page as fast as the first)."
                ]
            }
        )
    want = query.per_page + 1
    tags: dict[int, list[dict[str, Any]]] = {}

    on_terms = bool(tokens) and query.sort.lstrip("-") == "name"
    fetched: Sequence[Any] | None = None
    counted = None
    listed_read = False  # the page's rows already are its listed columns, with their tags
    params: dict[str, Any] = {}  # the search's values, bound to the statements kept for its shape
    first_count: tuple[int, int] | None = None  # index entries and records page 1's statement read
    if on_terms:
        kept, params = _kept_search(query, visibility, tokens)
        matches = kept.matches
        if not jump and key is None:  # page 1: one statement, its listed rows and the first count
            known = (
                (
                    tuple(tokens),
                    visibility.customers,
                    visibility.leads,
                    visibility.accounts,
                    query.kind,
                    tuple(query.location_id),
                )
                if _shape_of(query, visibility, tokens) is not None
                else None
            )
            one = _first_page(conn, kept, lambda: _ordered(kept, tokens), params, forward, want, tags, known)
            first_count = one.first_count
            if one.total is not None:
                counted = (one.total, False)
            if one.rows is not None:
                fetched, listed_read = one.rows, True
        elif not jump:
            small = _small_result(conn, kept, params, key, forward, want, len(tokens) > 1)
            if small is not None:
                fetched, counted = small[0], (small[1], False)
        if jump:
            base = matches.distinct().subquery()
            statement, key_cols = select(base.c.id, base.c.sort_name), (base.c.sort_name, base.c.id)
        elif fetched is None:  # (answered by the small result: the ordered walk is not built)
            statement = _ordered(kept, tokens)
            key_cols = (statement.selected_columns.sort_name, statement.selected_columns.id)
        counter = lambda: _term_count(conn, kept, params, first_count)  # noqa: E731 - deferred until the page is read
    else:
        plain = (
            (visibility.customers, visibility.leads, query.kind, tuple(query.location_id))
            if not tokens and not _needs_customer_table(query)
            else None
        )
        # page 1 of a list filtered by kind and location only: its two statements are built once
        first = (plain, query.sort, want) if plain is not None and key is None and not jump else None
        built = _FIRST_PAGES.get(first) if first is not None else None
        if built is None:
            conditions = _customer_filters(query, visibility)
            if tokens:
                matched = _term_statement(query, visibility, tokens).subquery()
                conditions.append(Customer.id.in_(select(matched.c.id)))
            key_cols = _key_columns(query.sort, False)
            # A page read in order reads its listed columns at once (one round trip less); one skipping
            # records by OFFSET reads the keys only (index-only when it can) and the twenty rows after.
            listed = _LISTED if not jump else dict.fromkeys((Customer.id, *key_cols))
            statement = select(*listed).where(*conditions)
            built = (statement, select(Customer.id).where(*conditions))
            if first is not None:
                ordered = statement.order_by(*[c.asc() if forward else c.desc() for c in key_cols]).limit(want)
                built = (_with_tags(ordered, key_cols, forward), built[1])
                if len(_FIRST_PAGES) >= _FIRST_PAGES_KEPT:
                    _FIRST_PAGES.clear()
                _FIRST_PAGES[first] = built
        if first is not None:  # one row per record, already ordered and limited, with its tags
            fetched = _fold_tags(conn.execute(built[0]).all(), tags)
        counted_statement = built[1]
        counter = lambda: _bounded_count(conn, counted_statement, plain=plain)  # noqa: E731

    if fetched is None and on_terms and not jump:  # the ordered walk of a kept search: its key is bound too
        unordered, keyed, cursor_key = statement, key is not None, key or [None, None]

        def keyset_walk():
            walk = unordered
            if keyed:
                bound = tuple_(bindparam("sq_key0", cursor_key[0]), bindparam("sq_key1", cursor_key[1]))
                walk = walk.where(tuple_(*key_cols) > bound if forward else tuple_(*key_cols) < bound)
            return walk.order_by(*[c.asc() if forward else c.desc() for c in key_cols])

        statement = kept.get(("page", forward, keyed), keyset_walk)
        if keyed:
            params = params | {"sq_key0": cursor_key[0], "sq_key1": cursor_key[1]}
        fetched = _first_rows(conn, statement, want, kept, params)
    if fetched is None:
        if key is not None:
            row_key = tuple_(*key_cols) if len(key_cols) > 1 else key_cols[0]
            bound = tuple_(*key) if len(key_cols) > 1 else key[0]
            statement = statement.where(row_key > bound if forward else row_key < bound)
        statement = statement.order_by(*[c.asc() if forward else c.desc() for c in key_cols])
        if jump:
            fetched = conn.execute(statement.limit(want).offset((page - 1) * query.per_page), params).all()
        else:  # one row per record, with its tags
            fetched = _fold_tags(conn.execute(_with_tags(statement.limit(want), key_cols, forward)).all(), tags)
    has_more = len(fetched) > query.per_page
    page_rows = list(fetched[: query.per_page])
    for row in fetched[query.per_page :] if listed_read else ():  # the look-ahead row is not listed
        tags.pop(row.id, None)
    if direction == "prev":
        page_rows.reverse()
    ids = [row.id for row in page_rows]

    total, estimated = counted or counter()
    if (not on_terms and not jump) or listed_read:  # the page's rows are already its listed columns (and tags)
        rows = page_rows
    else:
        listed = _fold_tags(conn.execute(_LISTED_WITH_TAGS, {"ids": ids}).all(), tags) if ids else []
        rows_by_id = {row.id: row for row in listed}
        rows = [rows_by_id[i] for i in ids if i in rows_by_id]

    more_after = has_more if direction == "next" else True
    next_cursor = (
        _encode_cursor({"s": query.sort, "d": "next", "p": page + 1, "k": _key_of(rows[-1], query.sort)})
        if rows and more_after
        else None
    )
    prev_cursor = (
        _encode_cursor({"s": query.sort, "d": "prev", "p": page - 1, "k": _key_of(rows[0], query.sort)})
        if rows and page > 1
        else None
    )
    return Result(rows, page, query.per_page, total, estimated, next_cursor, prev_cursor, tags)


# built once: composing it cost as much as running it (page 1 of the list asks it on every request)
_TAGS_OF = (
    select(CustomerTag.customer_id, Tag.id, Tag.name, Tag.color)
    .join(Tag, Tag.id == CustomerTag.tag_id)
    .where(CustomerTag.customer_id.in_(bindparam("ids", expanding=True)))
    .order_by(Tag.name_key)
)


def tags_of(session: Session | Connection, customer_ids: list[int]) -> dict[int, list[dict[str, Any]]]:
    """Tags of several records in one query, for list items."""
    if not customer_ids:
        return {}
    found: dict[int, list[dict[str, Any]]] = {}
    rows = session.execute(_TAGS_OF, {"ids": customer_ids}).all()
    for customer_id, tag_id, name, color in rows:
        found.setdefault(customer_id, []).append({"id": tag_id, "name": name, "color": color})
    return found
