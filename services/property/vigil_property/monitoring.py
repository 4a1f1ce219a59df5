"""What central stations tell Vigil about monitored accounts: signals and account statuses.

Both arrive through the gateway, which verified the central station's signature; they are matched
to a property by account number. A status change updates the property's monitoring status (with
history and ``property.monitoring_changed``, like an edit); every message, status included, goes to
the property's signal log. A message for an account no property has is kept unmatched for an
operator to resolve: never dropped.
"""

from __future__ import annotations

import contextlib
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.orm import Session

from vigil_shared.crypto import FieldCipher
from vigil_shared.db import utcnow
from vigil_shared.errors import Problem, conflict, not_found
from vigil_shared.messaging.outbox import Outbox

from . import properties
from .account_numbers import account_key
from .history import Actor
from .models import Property, Signal

TEST_INTERVAL = timedelta(hours=25)  # a panel testing daily is overdue after a day and an hour


def find_property(session: Session, account_number: str) -> Property | None:
    return session.scalar(select(Property).where(Property.account_key == account_key(account_number)))


def receive(session: Session, outbox: Outbox, cipher: FieldCipher, data: dict[str, Any], actor: Actor) -> Signal:
    """Logs one signal or status message; a status moves the matched property's monitoring status."""
    prop = find_property(session, data["account_number"])
    signal = Signal(
        property_id=prop.id if prop is not None else None,
        account_number=data["account_number"],
        account_key=account_key(data["account_number"]) or "",
        central_station=data["central_station"],
        message_id=data["message_id"],
        kind=data["kind"],
        status=data.get("status"),
        zone=data.get("zone"),
        panel_user=data.get("user"),
        description=data.get("description"),
        occurred_at=data.get("occurred_at") or utcnow(),
        received_at=utcnow(),
    )
    session.add(signal)
    if prop is not None and data["kind"] == "status" and prop.monitoring_status != data["status"]:
        with contextlib.suppress(Problem):  # an inactive property keeps its status; the message stays in its log
            properties.update_property(session, outbox, cipher, prop, {"monitoring_status": data["status"]}, actor)
    session.flush()
    return signal


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


def resolve(session: Session, signal_id: int, prop: Property, actor: Actor) -> Signal:
    """Attaches an unmatched signal to a property (an operator found where it belongs)."""
    signal = session.get(Signal, signal_id)
    if signal is None or signal.property_id is not None and signal.resolved_at is None:
        raise not_found("unmatched signal")
    if signal.resolved_at is not None:
        raise conflict("The signal was already resolved.")
    signal.property_id = prop.id
    signal.resolved_at = utcnow()
    signal.resolved_by = actor.name
    return signal


def _address(value: str | None) -> str:
    return " ".join((value or "").lower().replace(",", " ").split())


def drift(session: Session, central_station: str, accounts: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Vigil's properties against a central station's account list: accounts only the station has,
    properties linked to the station (they had a message from it) that its list lacks, and accounts
    whose status or address differ."""
    listed: dict[str, dict[str, Any]] = {}
    for account in accounts:
        key = account_key(account.get("account_number"))
        if key:
            listed[key] = account
    found: dict[str, Property] = {}
    keys = [k for k in listed if k]
    for start in range(0, len(keys), 500):
        for prop in session.scalars(select(Property).where(Property.account_key.in_(keys[start : start + 500]))):
            if prop.account_key:
                found[prop.account_key] = prop
    linked = set(
        session.scalars(
            select(Signal.account_key)
            .where(Signal.central_station == central_station, Signal.property_id.is_not(None))
            .distinct()
        )
    )
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
        if gone is not None:
            report["missing_at_station"].append({"property_id": gone.id, "account_number": gone.account_number})
    return report
