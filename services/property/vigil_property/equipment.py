"""Equipment installed at a property: item, zone, serial number, install date, warranty, status.

Each change is written in the property's history (subject ``equipment <id>``), so the installation
record of a site can be reconstructed after a transfer or a dispute.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, Row, bindparam, select
from sqlalchemy.orm import Session

from vigil_shared.errors import get_or_404, validation_problem
from vigil_shared.http import Page, paginate

from . import history, writes
from .history import Actor
from .models import Equipment, Property
from .properties import ensure_editable

COLUMNS = ("item", "zone", "serial_number", "install_date", "warranty_end", "status", "notes")


def list_equipment(session: Session, property_id: int, *, page: int, per_page: int, status: str | None = None) -> Page:
    statement = select(Equipment).where(Equipment.property_id == property_id)
    if status is not None:
        statement = statement.where(Equipment.status == status)
    return paginate(session, statement.order_by(Equipment.zone.asc(), Equipment.id.asc()), page, per_page)


def on_site(conn: Connection, property_id: int) -> Sequence[Row[*tuple[Any, ...]]]:
    """The property's equipment not removed, as plain rows of what the on-site answer shows."""
    return conn.execute(_ON_SITE, {"property_id": property_id}).all()


# built once, the property bound at each call (the technician lookup reads it on every lookup)
_EQUIPMENT = Equipment.__table__
_ON_SITE = (
    select(
        *(
            _EQUIPMENT.c[name]
            for name in ("id", "item", "zone", "serial_number", "install_date", "warranty_end", "status")
        )
    )
    .where(_EQUIPMENT.c.property_id == bindparam("property_id"), _EQUIPMENT.c.status != "removed")
    .order_by(_EQUIPMENT.c.id)
)


def get_equipment(session: Session, property_id: int, equipment_id: int) -> Equipment:
    return get_or_404(session, Equipment, equipment_id, "equipment", property_id=property_id)


def _check_dates(install_date, warranty_end) -> None:
    if install_date is not None and warranty_end is not None and warranty_end < install_date:
        raise validation_problem({"warranty_end": ["Cannot be before the install date."]})


def add_equipment(session: Session, prop: Property, data: dict, actor: Actor) -> Equipment:
    ensure_editable(prop)
    _check_dates(data.get("install_date"), data.get("warranty_end"))
    created = Equipment(property_id=prop.id, **({"status": "installed"} | {k: data[k] for k in COLUMNS if k in data}))
    session.add(created)
    writes.flush(session)
    history.record(session, prop.id, "equipment_added", actor, subject=f"equipment {created.id}", new=created.item)
    return created


def update_equipment(session: Session, prop: Property, equipment: Equipment, changes: dict, actor: Actor) -> list[str]:
    ensure_editable(prop)
    _check_dates(
        changes.get("install_date", equipment.install_date), changes.get("warranty_end", equipment.warranty_end)
    )
    values = {key: changes[key] for key in COLUMNS if key in changes}
    changed = history.record_changes(session, prop.id, equipment, values, actor, subject=f"equipment {equipment.id}")
    if changed:
        writes.flush(session)
    return changed


def remove_equipment(session: Session, prop: Property, equipment: Equipment, actor: Actor) -> None:
    """Deletes a record entered by mistake; equipment taken out of a site is better marked ``removed``."""
    ensure_editable(prop)
    history.record(
        session, prop.id, "equipment_deleted", actor, subject=f"equipment {equipment.id}", old=equipment.item
    )
    session.delete(equipment)
    writes.flush(session)
