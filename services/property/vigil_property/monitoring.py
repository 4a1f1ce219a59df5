"""What central stations tell Vigil about monitored accounts: signals and account statuses.

Both arrive through the gateway, which verified the central station's signature; they are matched
to a property by account number, among the properties *that station monitors* only
(:func:`station_may_write`): a property linked to the station (``central_station``), or one linked to
no station yet whose customer's Monitored By is the monitoring company the station's integration is
bound to (``monitoring_company_id``). A status change updates the property's monitoring status (with
history and ``property.monitoring_changed``, like an edit); every message, status included, goes to
the property's signal log. A message for an account no property of the station has, whether no
property has it or another station's property does, is kept unmatched for an operator to resolve:
never dropped, and answered alike (the same query, the same receipt), so a station learns nothing of
accounts it does not monitor. The first message an unlinked property gets from its station links it
(``central_station``, announced with ``property.updated``): the customer service then locks the
customer's Monitored By until the link is removed (PATCH ``central_station`` null, or a transfer to a
customer another company monitors). An operator who resolves an unmatched message to a property links
it to the message's station.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from vigil_shared.crypto import FieldCipher
from vigil_shared.db import Database, utcnow
from vigil_shared.errors import Problem, conflict, not_found
from vigil_shared.messaging.contracts import PropertyUpdated
from vigil_shared.messaging.outbox import Outbox

from . import history, properties
from .account_numbers import account_key
from .history import Actor
from .models import KnownCustomer, Property, Signal

_LOG_ONCE = tuple(  # [PostgreSQL, SQLite]: a message id already logged for its station is skipped
    dialect.insert(Signal.__table__).on_conflict_do_nothing(index_elements=["central_station", "message_id"])
    for dialect in (postgresql, sqlite)
)
TEST_INTERVAL = timedelta(hours=25)  # a panel testing daily is overdue after a day and an hour


def station_may_write(
    linked_to: str | None, monitored_by: int | None, station: str, station_company: int | None
) -> bool:
    """Whether a station's message reaches a property: one linked to that station, or one linked to none
    whose customer is monitored by the station's monitoring company. Never another station's property."""
    if linked_to is not None:
        return linked_to == station
    return station_company is not None and monitored_by == station_company


def _candidates(keys: Iterable[str]) -> Select[str | None, int, str | None, int | None]:
    """The properties with these account keys, with their link and their customer's Monitored By
    (one query, whichever station asks: what it may match is decided by :func:`station_may_write`)."""
    return (
        select(Property.account_key, Property.id, Property.central_station, KnownCustomer.monitoring_company_id)
        .outerjoin(KnownCustomer, KnownCustomer.customer_id == Property.customer_id)
        .where(Property.account_key.in_(keys))
    )


def receive(session: Session, outbox: Outbox, cipher: FieldCipher, data: dict[str, Any], actor: Actor) -> Signal:
    """Logs one signal or status message (see :func:`receive_many`); returns its log entry."""
    receive_many(session, outbox, cipher, [data], actor)
    found = session.scalar(
        select(Signal).where(Signal.central_station == data["central_station"], Signal.message_id == data["message_id"])
    )
    assert found is not None  # just written, or written before under the same id
    return found


def _keys(items: list[dict[str, Any]]) -> set[str]:
    return {account_key(item["account_number"]) or "" for item in items}


def _log_rows(items: list[dict[str, Any]], found: dict[str, Any]) -> list[dict[str, Any]]:
    """The signal log's rows of ``items``, each matched (:func:`station_may_write`) among ``found``
    (the :func:`_candidates` rows by account key)."""

    def matched(item: dict[str, Any]) -> int | None:
        row = found.get(account_key(item["account_number"]) or "")
        if row is None or not station_may_write(
            row.central_station, row.monitoring_company_id, item["central_station"], item.get("monitoring_company_id")
        ):
            return None
        return int(row.id)

    now = utcnow()
    return [
        {
            "property_id": matched(item),
            "account_number": item["account_number"],
            "account_key": account_key(item["account_number"]) or "",
            "central_station": item["central_station"],
            "message_id": item["message_id"],
            "kind": item["kind"],
            "status": item.get("status"),
            "zone": item.get("zone"),
            "panel_user": item.get("user"),
            "description": item.get("description"),
            "occurred_at": item.get("occurred_at") or now,
            "received_at": now,
        }
        for item in items
    ]


def log_signals(db: Database, items: list[dict[str, Any]]) -> list[int | None] | None:
    """The common case of :func:`receive_many` in two statements outside any transaction: a batch of
    signals only (no status), none reaching a property not yet linked to its station. The match is read
    and the rows inserted (one statement: atomic, a message id already logged skipped) on an autocommit
    connection, with no ``BEGIN``/``COMMIT`` round trips and no liveness probe; each message's property
    id. ``None``, having written nothing, when the batch changes a property (a status, a first link):
    :func:`receive_many` then runs it in a transaction with its history and events."""
    if not items or any(item["kind"] == "status" for item in items):
        return None
    for attempt in (1, 2):
        try:
            with db.read_engine.connect() as conn:
                found = {row.account_key: row for row in conn.execute(_candidates(_keys(items)))}
                rows = _log_rows(items, found)
                linked_to = {row.id: row.central_station for row in found.values()}
                if any(
                    row["property_id"] is not None and linked_to.get(row["property_id"]) != row["central_station"]
                    for row in rows
                ):
                    return None  # a first message links its property: history and an event, in a transaction
                conn.execute(_LOG_ONCE[conn.dialect.name == "sqlite"], rows)
            return [row["property_id"] for row in rows]
        except DBAPIError as error:  # a connection the database dropped: retried once (the insert skips what it wrote)
            if not error.connection_invalidated or attempt == 2:
                raise
    raise AssertionError("unreachable")  # pragma: no cover


def receive_many(
    session: Session, outbox: Outbox, cipher: FieldCipher, items: list[dict[str, Any]], actor: Actor
) -> list[int | None]:
    """Logs a batch of messages in one statement (the gateway groups what central stations send while
    the previous batch is written); returns each message's property id (None: kept unmatched).

    A message id already logged for its central station is not logged twice (the gateway sends a
    batch again when it could not learn that the first attempt was written). Status messages then move
    their property's monitoring status, in order, like :func:`receive`."""
    found = {row.account_key: row for row in session.execute(_candidates(_keys(items)))}
    rows = _log_rows(items, found)
    if rows:  # a Core insert of the table: the ORM's bulk path costs more than the statement (rows are not loaded)
        session.execute(_LOG_ONCE[session.get_bind().dialect.name == "sqlite"], rows)
    stations = {row["property_id"]: row["central_station"] for row in rows if row["property_id"] is not None}
    if stations:  # the first message from a station links the property to it (the link as the match read it)
        linked_to = {row.id: row.central_station for row in found.values()}
        for property_id in [pid for pid, station in stations.items() if linked_to.get(pid) != station]:
            prop = session.get(Property, property_id)  # loaded only when its link changes
            if prop is not None:
                link_station(session, outbox, prop, stations[property_id], actor)
    for row in rows:
        if row["kind"] == "status" and row["property_id"] is not None:
            prop = session.get(Property, row["property_id"])
            if prop is not None and prop.monitoring_status != row["status"]:
                with contextlib.suppress(Problem):  # an inactive property keeps its status
                    properties.update_property(
                        session, outbox, cipher, prop, {"monitoring_status": row["status"]}, actor
                    )
    session.flush()
    return [row["property_id"] for row in rows]


def signals_of(property_id: int, kind: str | None = None, since: datetime | None = None) -> Select[Any]:
    statement = select(Signal).where(Signal.property_id == property_id)
    if kind:
        statement = statement.where(Signal.kind == kind)
    if since:
        statement = statement.where(Signal.occurred_at >= since)
    return statement.order_by(Signal.occurred_at.desc(), Signal.id.desc())


def test_state(session: Session, property_id: int, now: datetime | None = None) -> dict[str, Any]:
    """When the property last sent a test signal, and whether the next one is overdue."""
    last = session.scalar(
        select(Signal.occurred_at)
        .where(Signal.property_id == property_id, Signal.kind == "test")
        .order_by(Signal.occurred_at.desc())
        .limit(1)
    )
    now = now or utcnow()
    return {"last_test_at": last, "test_overdue": last is None or now - last > TEST_INTERVAL}


def unmatched() -> Select[Any]:
    return (
        select(Signal)
        .where(Signal.property_id.is_(None), Signal.resolved_at.is_(None))
        .order_by(Signal.received_at, Signal.id)
    )


def link_station(session: Session, outbox: Outbox, prop: Property, station: str | None, actor: Actor) -> None:
    """Links the property to the central station that sent it a message (once; a new station replaces it);
    ``None`` unlinks it (a transfer to a customer another monitoring company monitors)."""
    if prop.central_station == station:
        return
    history.record(session, prop.id, "updated", actor, field="central_station", old=prop.central_station, new=station)
    prop.central_station = station
    outbox.add(
        session,
        PropertyUpdated(
            property_id=prop.id,
            customer_id=prop.customer_id,
            changed=["central_station"],
            account_number=prop.account_number,
            central_station=station,
        ),
    )


def resolve(session: Session, outbox: Outbox, signal_id: int, prop: Property, actor: Actor) -> Signal:
    """Attaches an unmatched signal to a property (an operator found where it belongs), linking the
    property to the signal's station."""
    signal = session.get(Signal, signal_id)
    if signal is None or signal.property_id is not None and signal.resolved_at is None:
        raise not_found("unmatched signal")
    if signal.resolved_at is not None:
        raise conflict("The signal was already resolved.")
    signal.property_id = prop.id
    signal.resolved_at = utcnow()
    signal.resolved_by = actor.name
    link_station(session, outbox, prop, signal.central_station, actor)
    return signal


def _address(value: str | None) -> str:
    return " ".join((value or "").lower().replace(",", " ").split())


def drift(
    session: Session, central_station: str, accounts: list[dict[str, Any]], monitoring_company_id: int | None = None
) -> dict[str, list[dict[str, Any]]]:
    """Vigil's properties the station monitors (:func:`station_may_write`) against its account list:
    accounts only the station has (another station's property is not the station's: it is reported
    like an account Vigil lacks), properties linked to the station that its list lacks, and accounts
    whose status or address differ."""
    listed: dict[str, dict[str, Any]] = {}
    for account in accounts:
        key = account_key(account.get("account_number"))
        if key:
            listed[key] = account
    found: dict[str, Property] = {}
    keys = [k for k in listed if k]
    for start in range(0, len(keys), 500):
        statement = _candidates(keys[start : start + 500]).add_columns(Property)
        for row in session.execute(statement):
            if row.account_key and station_may_write(
                row.central_station, row.monitoring_company_id, central_station, monitoring_company_id
            ):
                found[row.account_key] = row.Property
    linked = {
        key
        for key in session.scalars(select(Property.account_key).where(Property.central_station == central_station))
        if key
    }
    report: dict[str, list[dict[str, Any]]] = {
        "missing_in_vigil": [],
        "missing_at_station": [],
        "status_mismatch": [],
        "address_mismatch": [],
    }
    for key, account in sorted(listed.items()):
        match = found.get(key)
        if match is None:
            report["missing_in_vigil"].append({"account_number": account["account_number"]})
            continue
        prop = match
        if account.get("status") and account["status"] != prop.monitoring_status:
            report["status_mismatch"].append(
                {
                    "property_id": prop.id,
                    "account_number": prop.account_number,
                    "vigil": prop.monitoring_status,
                    "station": account["status"],
                }
            )
        if account.get("address") and _address(account["address"]) != _address(prop.address):
            # Vigil's address is not in the report: its readers (integration managers) may hold no
            # property right anywhere, and the list compared is whatever the station's URL answered.
            report["address_mismatch"].append(
                {"property_id": prop.id, "account_number": prop.account_number, "station": account["address"]}
            )
    for key in sorted(linked - set(listed)):
        gone = session.scalar(select(Property).where(Property.account_key == key))
        if gone is not None and gone.central_station == central_station:
            report["missing_at_station"].append({"property_id": gone.id, "account_number": gone.account_number})
    return report
