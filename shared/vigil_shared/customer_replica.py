"""What a service that keeps customer-owned records knows about the customers, declared once.

- :func:`ask_customer_service`: one signed internal ``GET`` to the customer service (its answer,
  :class:`CustomerGone` for 404, :class:`CustomerUnavailable` when it cannot answer).
- :func:`lookup_customer`: a customer's :class:`CustomerFacts` at request time (None for 404, a 503
  problem when the customer service cannot answer), for when the replica has not heard of it yet:
  the ``customer.created`` event can trail the creation by a moment, and a client that creates a
  customer and at once a record for it must not get a 422 for that.
- :class:`CustomerReplica`: a service's replica table of the customers (``known_customers``), fed by
  the ``customer.*`` events and by :func:`lookup_customer`. Writes are single ``INSERT … ON
  CONFLICT`` statements, so the event consumer and a request that has just asked the customer
  service can record the same customer at once without either failing. A location (with the other
  facts the service keeps, which travel with it) is only replaced by facts known at a later moment
  (``location_as_of``), so events arriving out of order cannot move a customer back to where it
  was. A deleted customer stays a tombstone: ids are never reused.
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from flask import g
from sqlalchemy import and_, or_, select
from sqlalchemy.orm import Session

from . import errors
from .config import Settings, service_url
from .db import upsert, utcnow
from .errors import Problem
from .identity import IDENTITY_HEADER, service_identity, sign_identity
from .messaging.contracts import CustomerConverted, CustomerCreated, CustomerDeleted, CustomerUpdated, Event
from .messaging.outbox import EventConsumer
from .runtime import current_runtime
from .web import REQUEST_ID_HEADER

if TYPE_CHECKING:
    import urllib3

VIEW_PERMISSIONS = frozenset({"customers.view", "leads.view"})
# the credit subject (``GET /api/v1/internal/customers/{id}/credit-subject``): what a bureau pull or an
# ADT PreCheck needs of the customer, read by the credit service only when it runs one; the customer
# service serves these fields to a caller holding both permissions, and audits each read
CREDIT_SUBJECT_FIELDS = (
    "first_name",
    "last_name",
    "address_line1",
    "address_line2",
    "city",
    "state",
    "zip",
    "county",
    "email",
    "primary_phone",
    "account_type",
    "business_name",
    "business_contact",
    "dealer_number",
    "ssn",
    "birthdate",
)
CREDIT_SUBJECT_PERMISSIONS = ("confidential.ssn.view", "confidential.birthdate.view")
LOOKUP_TIMEOUT_SECONDS = 3.0
CUSTOMER_SERVICE_DOWN = "The customer service could not be asked about the customer"  # a 503 its lookup answers
# what a replica may keep besides the location
FACT_COLUMNS = ("kind", "parent_id", "archived", "monitoring_company_id")


@functools.cache
def _http() -> urllib3.PoolManager:
    """Built at the first lookup: the customer service imports this module for the credit subject's
    fields and never asks itself, and urllib3 (4.2 MB in a bare interpreter) took 0.9-1.0 MB off its
    web worker (bench/bench_idle_rss.py)."""
    import urllib3  # noqa: PLC0415 - see above

    return urllib3.PoolManager(maxsize=16, retries=False)  # a credit worker runs several threads


class CustomerUnavailable(Exception):
    """The customer service could not be asked."""


class CustomerGone(Exception):
    """The customer does not exist (any more)."""


@dataclass(frozen=True)
class CustomerFacts:
    """What a service learns about a customer from the customer service."""

    customer_id: int
    location_id: int | None
    kind: str | None = None
    parent_id: int | None = None
    archived: bool = False
    monitoring_company_id: int | None = None  # Monitored By, when the answer shows it


def unavailable() -> Problem:
    return errors.unavailable("The customer service could not be asked about this customer. Try again shortly.")


def ask_customer_service(
    caller: str,
    settings: Settings,
    path: str,
    permissions: Iterable[str],
    request_id: str | None,
    *,
    timeout: float = LOOKUP_TIMEOUT_SECONDS,
) -> Any:
    """The decoded JSON answer to ``GET path`` (None when it is not JSON), asked as service ``caller``.

    :class:`CustomerGone` for 404, :class:`CustomerUnavailable` when unreachable or for any other status.
    """
    log = logging.getLogger(f"vigil.{caller}.customer_client")
    token = sign_identity(
        service_identity(caller, set(permissions), request_id=request_id),
        settings.internal_secret,
        settings.identity_token_ttl,
    )
    headers = {IDENTITY_HEADER: token, "Accept": "application/json"}
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    import urllib3  # noqa: PLC0415 - see _http

    try:
        response = _http().request(
            "GET", f"{service_url('customer')}{path}", headers=headers, timeout=urllib3.Timeout(total=timeout)
        )
    except urllib3.exceptions.HTTPError as exc:
        log.warning("customer service unreachable", extra={"request_id": request_id, "error": type(exc).__name__})
        raise CustomerUnavailable() from None
    if response.status == 404:
        raise CustomerGone()
    if response.status != 200:
        log.warning(
            "customer service answered unexpectedly", extra={"request_id": request_id, "status": response.status}
        )
        raise CustomerUnavailable()
    try:
        return json.loads(response.data)
    except ValueError:
        return None


def id_of(payload: Any, name: str) -> int | None:
    """``payload[name]`` when ``payload`` is a dict and that is an integer (never a bool), else None."""
    value = payload.get(name) if isinstance(payload, dict) else None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def facts_of(customer_id: int, payload: Any) -> CustomerFacts:
    """The facts in the customer service's representation of a customer (what it does not say is unknown)."""
    record = payload if isinstance(payload, dict) else {}
    kind = record.get("kind") if record.get("kind") in ("customer", "lead") else None
    return CustomerFacts(
        customer_id,
        id_of(record, "location_id"),
        kind=kind,
        parent_id=id_of(record, "parent_customer_id"),
        archived=record.get("archived_at") is not None,
        monitoring_company_id=id_of(record, "monitoring_company_id"),
    )


def lookup_customer(
    caller: str, customer_id: int, permissions: Iterable[str] = VIEW_PERMISSIONS
) -> CustomerFacts | None:
    """The customer's facts for 200, None for 404; 503 problem when the customer service cannot answer."""
    request_id = g.get("request_id")
    try:
        payload = ask_customer_service(
            caller, current_runtime().settings, f"/api/v1/customers/{customer_id}", permissions, request_id
        )
    except CustomerGone:
        return None
    except CustomerUnavailable:
        raise unavailable() from None
    return facts_of(customer_id, payload)


def stated_facts(event: Event[Any]) -> dict[str, Any]:
    """What a ``customer.created``/``updated``/``converted`` event states beyond the location: a fact
    is applied only when the event says it."""
    payload = event.payload
    if isinstance(payload, CustomerCreated):
        return {
            "kind": payload.kind,
            "parent_id": payload.parent_id,
            "archived": False,
            "monitoring_company_id": payload.monitoring_company_id,
        }
    if isinstance(payload, CustomerConverted):
        return {"kind": "customer"}
    facts: dict[str, Any] = {}
    if "parent_customer_id" in payload.changed:
        facts["parent_id"] = payload.parent_id
    if "monitoring_company_id" in payload.changed:
        facts["monitoring_company_id"] = payload.monitoring_company_id
    if "archived_at" in payload.changed and payload.archived is not None:
        facts["archived"] = payload.archived
    return facts


Known = TypeVar("Known")
Lookup = Callable[[int], "CustomerFacts | None"]


class CustomerReplica(Generic[Known]):
    """The replica table ``model`` (columns ``customer_id``, ``deleted``, ``location_id``,
    ``location_as_of``, ``updated_at`` and the ``facts`` it keeps, of :data:`FACT_COLUMNS`).

    ``confirmed_by`` are the facts that, when the customer service states them differently from
    the replica, make :meth:`resolve` record its answer (the location always does).
    """

    def __init__(
        self,
        model: type[Known],
        *,
        facts: tuple[str, ...] = (),
        confirmed_by: tuple[str, ...] = (),
        archive_as_of: bool = False,
    ):
        unknown = set(facts) - set(FACT_COLUMNS) or set(confirmed_by) - set(facts)
        if unknown:
            raise ValueError(f"not facts this replica keeps: {sorted(unknown)}")
        self.model = model
        self.facts = facts
        self.confirmed_by = confirmed_by
        self.archive_as_of = archive_as_of  # the archive state has its own order (``archived_as_of``)

    def follow(self, consumer: EventConsumer, removed: Callable[[Session, int, Event[Any]], None]) -> None:
        """Keeps the replica current from the ``customer.*`` events: created, updated and converted
        record the customer (with the facts each states), deleted tombstones it, then ``removed``
        (session, customer id, event) drops what the service held for it, in the same transaction."""

        def customer_seen(session: Session, event: Event[Any]) -> None:
            payload = event.payload
            self.seen(session, payload.customer_id, payload.location_id, event.occurred_at, **stated_facts(event))

        for payload_type in (CustomerCreated, CustomerUpdated, CustomerConverted):
            consumer.on(payload_type)(customer_seen)

        @consumer.on(CustomerDeleted)
        def customer_deleted(session: Session, event: Event[CustomerDeleted]) -> None:
            self.deleted(session, event.payload.customer_id)
            removed(session, event.payload.customer_id, event)

    def insert(self, session: Session) -> Any:
        """An ``INSERT`` into the replica table that takes an ``ON CONFLICT`` clause."""
        return upsert(session, self.model)

    def known(self, session: Session, customer_id: int, *, lock: bool = False) -> Known | None:
        """The replica entry as stored now (never a stale copy from the session), optionally row-locked."""
        model: Any = self.model
        statement = select(model).where(model.customer_id == customer_id)
        if lock:
            statement = statement.with_for_update()
        return session.scalar(statement.execution_options(populate_existing=True))

    def is_archived(self, session: Session, customer_id: int) -> bool:
        known: Any = self.known(session, customer_id)
        return known is not None and bool(known.archived)

    def seen(self, session: Session, customer_id: int, location_id: int | None, as_of: datetime, **facts: Any) -> None:
        """Records that the customer exists (in ``location_id`` as of ``as_of``); a tombstone stays one.

        ``facts`` are the other columns the sender stated (those this replica keeps are recorded);
        what it did not state is left as it is. An unknown location (``None``) never erases a known
        one: it means the sender did not say.
        """
        model: Any = self.model
        now = utcnow()
        kept = set(self.facts) - ({"archived"} if self.archive_as_of else set())
        values = {key: value for key, value in facts.items() if key in kept}
        statement = self.insert(session).values(
            customer_id=customer_id,
            deleted=False,
            location_id=location_id,
            location_as_of=as_of if location_id is not None else None,
            updated_at=now,
            **values,
        )
        newer = and_(
            model.deleted.is_(False),
            or_(model.location_as_of.is_(None), model.location_as_of <= as_of),
        )
        changes: dict[str, Any] = dict(values)
        if location_id is not None:
            changes.update(location_id=location_id, location_as_of=as_of)
        if not changes:
            statement = statement.on_conflict_do_nothing(index_elements=[model.customer_id])
        else:
            statement = statement.on_conflict_do_update(
                index_elements=[model.customer_id],
                set_={**changes, "updated_at": now},
                where=newer if location_id is not None else model.deleted.is_(False),
            )
        session.execute(statement)
        if self.archive_as_of and facts.get("archived") is not None:
            self.archived(session, customer_id, bool(facts["archived"]), as_of)

    def archived(self, session: Session, customer_id: int, archived: bool, as_of: datetime) -> None:
        """Records that the customer was archived (or unarchived) at ``as_of``; an older fact changes
        nothing (the saga's events and the customer service's answers may arrive in any order)."""
        model: Any = self.model
        now = utcnow()
        session.execute(
            self.insert(session)
            .values(customer_id=customer_id, deleted=False, archived=archived, archived_as_of=as_of, updated_at=now)
            .on_conflict_do_update(
                index_elements=[model.customer_id],
                set_={"archived": archived, "archived_as_of": as_of, "updated_at": now},
                where=and_(
                    model.deleted.is_(False),
                    or_(model.archived_as_of.is_(None), model.archived_as_of <= as_of),
                ),
            )
        )

    def deleted(self, session: Session, customer_id: int) -> None:
        """Tombstones the customer (what the service held for it is removed by its own command)."""
        model: Any = self.model
        now = utcnow()
        session.execute(
            self.insert(session)
            .values(customer_id=customer_id, deleted=True, updated_at=now)
            .on_conflict_do_update(index_elements=[model.customer_id], set_={"deleted": True, "updated_at": now})
        )

    def resolve(self, session: Session, customer_id: int, lookup: Lookup, *, confirm: bool = False) -> Known | None:
        """The live replica entry of a customer, or None when there is no such customer.

        The customer service is asked (once) when the replica has never heard of the customer, or
        knows it but not yet its location (customers replicated before locations existed). With
        ``confirm`` it is asked whatever the replica says: the replica learns of a deletion only
        when the ``customer.deleted`` event arrives, seconds after the ``DELETE`` answered 204, so
        anything that attaches a record to a customer asks the source, and a customer deleted
        before the request started is refused. A tombstone is final either way: ids are never reused.
        """
        known: Any = self.known(session, customer_id)
        if known is not None and known.deleted:
            return None
        if not confirm and known is not None and known.location_id is not None:
            return cast(Known, known)
        asked_at = utcnow()
        facts = lookup(customer_id)
        if facts is None:
            # unknown stays unknown; a known one's deletion event is on its way (a write must not wait for it)
            return None if confirm else cast(Known | None, known)
        stated = {name: getattr(facts, name) for name in self.facts if getattr(facts, name) is not None}
        if (
            known is not None
            and known.location_id == facts.location_id
            and all(getattr(known, name) == stated[name] for name in self.confirmed_by if name in stated)
        ):
            return cast(Known, known)  # confirmed, nothing new to record
        self.seen(session, customer_id, facts.location_id, asked_at, **stated)
        known = self.known(session, customer_id)
        return None if known is None or known.deleted else cast(Known, known)
