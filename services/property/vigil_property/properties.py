"""Property domain logic: plain functions over a session and the outbox, no HTTP in here.

Who may do what is decided by the commands (``commands``) that call these; these keep the record's own
rules: unique account numbers (whatever their letter case, see ``account_numbers``), inactive properties
frozen until reactivated, every change in the history and in an event written in the same transaction.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import ColumnElement, Row, bindparam, delete, func, or_, select, true
from sqlalchemy.orm import Session, defer

from vigil_shared.crypto import FieldCipher
from vigil_shared.db import Condition, Database, filtered, utcnow
from vigil_shared.errors import Problem, conflict, not_found, validation_problem
from vigil_shared.http import Page, paginate
from vigil_shared.messaging.contracts import (
    PropertyCreated,
    PropertyDeactivated,
    PropertyDeleted,
    PropertyMonitoringChanged,
    PropertyReactivated,
    PropertyTransferred,
    PropertyUpdated,
)
from vigil_shared.messaging.outbox import Outbox

from . import customers_replica as replica
from . import history, pins, writes
from .account_numbers import account_key
from .history import Actor
from .models import KnownCustomer, Property

# the API's nested ``access`` object ↔ the columns holding it
ACCESS_COLUMNS = {
    "managed_by": "access_managed_by",
    "name": "access_name",
    "phone": "access_phone",
    "email": "access_email",
    "notes": "access_notes",
}
PLAIN_FIELDS = (
    "account_number",
    "type",
    "system_type",
    "address",
    "city",
    "postal_code",
    "monitoring_status",
    "central_station",
    "notes",
)
SORTS: dict[str, ColumnElement[Any]] = {
    "id": Property.id.asc(),
    "-id": Property.id.desc(),
    "account_number": Property.account_number.asc(),
    "-account_number": Property.account_number.desc(),
    "city": Property.city.asc(),
    "-city": Property.city.desc(),
    "created_at": Property.created_at.asc(),
    "-created_at": Property.created_at.desc(),
}


def no_such_customer(field: str = "customer_id") -> Problem:
    return validation_problem({field: ["No such customer."]}, detail="The customer does not exist.")


def _account_taken() -> Problem:
    return conflict(
        "Another property already uses this account number.", errors={"account_number": ["Already in use."]}
    )


def ensure_editable(prop: Property) -> None:
    """409 for an inactive property: it stays frozen until reactivated."""
    if not prop.active:
        raise conflict("The property is inactive. Reactivate it before changing it.", state="inactive")


def flush(session: Session) -> None:
    # an integrity error here is a concurrent request taking the account number after our check
    writes.flush(session, _account_taken)


# Columns a read never shows: the PIN's check value, salt and ciphertext, and the account number's key.
# They load when first used (a PIN shown in clear, a PIN or account number changed).
_UNSHOWN = [
    defer(column) for column in (Property.pin_salt, Property.pin_hash, Property.pin_encrypted, Property.account_key)
]


# Built once: composing the statement (the ORM's column comparison, the options) cost about as much
# client CPU as running it; each read only binds the id.
_PROPERTY_WITH_LOCATION = (
    select(Property, KnownCustomer.location_id)
    .options(*_UNSHOWN)
    .outerjoin(KnownCustomer, KnownCustomer.customer_id == Property.customer_id)
    .where(Property.id == bindparam("property_id"))
)


def property_with_location(session: Session, property_id: int) -> tuple[Property, int | None]:
    """The property and its customer's location as the replica knows it, in one query (404 if none)."""
    row = session.execute(_PROPERTY_WITH_LOCATION, {"property_id": property_id}).first()
    if row is None:
        raise not_found("property")
    return row[0], row[1]


# The property read (GET) as one Core row: the columns a read shows (``access.PROPERTY_COLUMNS`` and the
# access ones), its version for the ETag, the PIN's ciphertext for a caller who sees it in clear, and the
# location. Plain table columns: no ORM compile state, identity map or entity to build, the larger part
# of a read's CPU when loaded as a ``Property`` (bench/profile_property_read.py).
_TABLE = Property.__table__
_READ = (
    select(
        *(
            _TABLE.c[name]
            for name in (
                "id",
                "customer_id",
                *PLAIN_FIELDS,
                "active",
                "deactivated_at",
                "created_at",
                "updated_at",
                "version",
                *ACCESS_COLUMNS.values(),
                "pin_encrypted",
            )
        ),
        KnownCustomer.__table__.c.location_id,
    )
    .select_from(
        _TABLE.outerjoin(KnownCustomer.__table__, KnownCustomer.__table__.c.customer_id == _TABLE.c.customer_id)
    )
    .where(_TABLE.c.id == bindparam("property_id"))
)


def read_property(db: Database, property_id: int) -> tuple[Row, int | None]:
    """What a read shows of the property, as a row with the model's attribute names, and its customer's
    location as the replica knows it: one statement outside any session (:meth:`Database.read_first`);
    404 if none."""
    row = db.read_first(_READ, {"property_id": property_id})
    if row is None:
        raise not_found("property")
    return row, row.location_id


def _in_locations(statement, locations: frozenset[int] | None):
    """Only properties whose customer is live and, unless ``locations`` is None, in those locations."""
    statement = statement.join(KnownCustomer, KnownCustomer.customer_id == Property.customer_id).where(
        KnownCustomer.deleted.is_(False)
    )
    if locations is not None:
        statement = statement.where(KnownCustomer.location_id.in_(sorted(locations)))
    return statement


_SEARCHED = (Property.account_number, Property.address, Property.city, Property.postal_code, Property.system_type)

# The property list's filters; ``q`` (when not empty) matches part of any searched column, in any case.
FILTERS: dict[str, Condition] = {
    "customer_id": lambda customer_id: Property.customer_id == customer_id,
    "ids": lambda ids: Property.id.in_(ids),
    "account_number": lambda number: Property.account_key == account_key(number),
    "q": lambda q: or_(*(func.lower(column).like(f"%{q.lower()}%") for column in _SEARCHED)) if q else true(),
    "monitoring_status": lambda monitoring_status: Property.monitoring_status == monitoring_status,
    "type": lambda type_: Property.type == type_,
    "active": lambda active: Property.active.is_(active),
}


def list_properties(
    session: Session,
    *,
    locations: frozenset[int] | None,
    page: int,
    per_page: int,
    sort: str = "id",
    **filters: int | str | bool | list[int] | None,
) -> Page:
    """Properties in the caller's locations, narrowed by :data:`FILTERS`."""
    statement = filtered(_in_locations(select(Property), locations), FILTERS, filters)
    return paginate(session, statement.order_by(SORTS[sort], Property.id.asc()), page, per_page)


def locations_of(session: Session, customer_ids: Iterable[int]) -> dict[int, int | None]:
    ids = sorted(set(customer_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(KnownCustomer.customer_id, KnownCustomer.location_id).where(KnownCustomer.customer_id.in_(ids))
    )
    return dict(rows.all())


def _columns(data: dict) -> dict:
    """API fields → column values (the nested ``access`` object flattened, the PIN left out)."""
    values = {key: data[key] for key in PLAIN_FIELDS if key in data}
    for key, value in (data.get("access") or {}).items():
        values[ACCESS_COLUMNS[key]] = value
    return values


def _ensure_account_free(session: Session, account_number: str | None, exclude_id: int | None = None) -> None:
    if account_number is None:
        return
    statement = select(Property.id).where(Property.account_key == account_key(account_number))
    if exclude_id is not None:
        statement = statement.where(Property.id != exclude_id)
    if session.scalar(statement) is not None:
        raise _account_taken()


def _api_name(column: str) -> str:
    for key, name in ACCESS_COLUMNS.items():
        if name == column:
            return f"access.{key}"
    return column


def create_property(
    session: Session, outbox: Outbox, cipher: FieldCipher, customer_id: int, data: dict, actor: Actor
) -> Property:
    """Adds a property to a customer the caller has already resolved in the replica.

    After the insert the replica entry is read again under a row lock (SQLite: under the write lock
    the insert took), so a ``customer.deleted`` handled concurrently is either seen here (422) or
    runs after this transaction and removes the new property with the others.
    """
    values = _columns(data)
    _ensure_account_free(session, values.get("account_number"))
    created = Property(
        customer_id=customer_id,
        active=True,
        **({"monitoring_status": "active"} | values),
        **pins.seal(cipher, data.get("pin") or pins.DEFAULT_PIN),
    )
    session.add(created)
    flush(session)
    known = replica.known_customer(session, customer_id, lock=True)
    if known is None or known.deleted:
        raise no_such_customer()
    history.record(session, created.id, "created", actor)
    outbox.add(
        session, PropertyCreated(property_id=created.id, customer_id=customer_id, account_number=created.account_number)
    )
    return created


def update_property(
    session: Session,
    outbox: Outbox,
    cipher: FieldCipher,
    prop: Property,
    changes: dict,
    actor: Actor,
    *,
    sees_pin: bool = True,
) -> list[str]:
    """Applies ``changes`` (API fields); returns the names of the fields that really changed.

    ``sees_pin``: whether the caller sees the PIN unmasked. One who does not has the PIN they send
    written whatever it is: were the stored one "no change", the answer (the same ETag, no history
    entry) would confirm a guess of it."""
    ensure_editable(prop)
    values = _columns(changes)
    changed = sorted(column for column, value in values.items() if getattr(prop, column) != value)
    new_pin = changes.get("pin")
    pin_changed = new_pin is not None and (not sees_pin or not pins.matches(cipher, prop, new_pin))
    if not changed and not pin_changed:
        return []
    if "account_number" in changed:
        _ensure_account_free(session, values["account_number"], exclude_id=prop.id)
    old_status = prop.monitoring_status
    for column in changed:
        history.record(
            session, prop.id, "updated", actor, field=_api_name(column), old=getattr(prop, column), new=values[column]
        )
        setattr(prop, column, values[column])
    if new_pin is not None and pin_changed:
        history.record(session, prop.id, "updated", actor, field="pin", old="(previous)", new=new_pin)
        for column, value in pins.seal(cipher, new_pin).items():
            setattr(prop, column, value)
    prop.updated_at = utcnow()
    flush(session)
    names = sorted([_api_name(column) for column in changed] + (["pin"] if pin_changed else []))
    outbox.add(
        session,
        PropertyUpdated(
            property_id=prop.id,
            customer_id=prop.customer_id,
            changed=names,
            account_number=prop.account_number,
            central_station=prop.central_station,
        ),
    )
    if "monitoring_status" in changed:
        outbox.add(
            session,
            PropertyMonitoringChanged(
                property_id=prop.id,
                customer_id=prop.customer_id,
                old_status=old_status,
                new_status=prop.monitoring_status,
            ),
        )
    return names


def set_active(
    session: Session, outbox: Outbox, prop: Property, active: bool, actor: Actor, reason: str | None = None
) -> Property:
    """Deactivates or reactivates; asking for the state the property is already in is a 409."""
    if prop.active == active:
        raise conflict(
            f"The property is already {'active' if active else 'inactive'}.", state="active" if active else "inactive"
        )
    prop.active = active
    prop.deactivated_at = None if active else utcnow()
    action = "reactivated" if active else "deactivated"
    history.record(session, prop.id, action, actor, field="active", old=not active, new=active, reason=reason)
    flush(session)
    announced = PropertyReactivated if active else PropertyDeactivated
    outbox.add(session, announced(property_id=prop.id, customer_id=prop.customer_id))
    return prop


def transfer_property(
    session: Session, outbox: Outbox, prop: Property, to_customer_id: int, actor: Actor, reason: str | None = None
) -> Property:
    """Moves the property, and with it its systems, equipment, appointments and history, to another customer.

    Everything attached refers to the property, not to the customer, so one update moves it all.
    The new customer's replica entry is re-read under lock afterwards, as for a create.
    """
    ensure_editable(prop)
    if prop.customer_id == to_customer_id:
        raise validation_problem({"to_customer_id": ["The property already belongs to this customer."]})
    from_customer_id = prop.customer_id
    prop.customer_id = to_customer_id
    prop.updated_at = utcnow()
    history.record(
        session,
        prop.id,
        "transferred",
        actor,
        field="customer_id",
        old=from_customer_id,
        new=to_customer_id,
        reason=reason,
    )
    flush(session)
    known = replica.known_customer(session, to_customer_id, lock=True)
    if known is None or known.deleted:
        raise no_such_customer("to_customer_id")
    outbox.add(
        session,
        PropertyTransferred(
            property_id=prop.id,
            from_customer_id=from_customer_id,
            to_customer_id=to_customer_id,
            account_number=prop.account_number,
            actor_id=actor.id,
            actor_name=actor.name,
            source=actor.source,
            reason=reason,
        ),
    )
    return prop


def remove_customer(session: Session, outbox: Outbox, customer_id: int) -> list[int]:
    """Everything held for a deleted customer goes: its properties and, by cascade, what hangs on them."""
    removed = list(
        session.scalars(select(Property.id).where(Property.customer_id == customer_id).order_by(Property.id))
    )
    if removed:
        session.execute(delete(Property).where(Property.id.in_(removed)))
        for property_id in removed:
            outbox.add(session, PropertyDeleted(property_id=property_id, customer_id=customer_id))
    return removed
