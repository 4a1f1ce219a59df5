"""Roles, locations and API keys: the rules around handing out rights."""
from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil_shared.errors import Problem, conflict, not_found, validation_problem
from vigil_shared.identity import Identity
from vigil_shared.permissions import GLOBAL_PERMISSIONS

from .access import all_location_ids, exceeds
from .models import ApiKey, Grant, Location, Role

SEES_EVERY_LOCATION = ("locations.manage", "users.manage", "roles.manage")


def get_role(session: Session, role_id: int) -> Role:
    role = session.get(Role, role_id)
    if role is None:
        raise not_found("role")
    return role


def check_role_name_free(session: Session, name: str, exclude: int | None = None) -> None:
    existing = session.scalar(select(Role).where(func.lower(Role.name) == name.lower()))
    if existing is not None and existing.id != exclude:
        raise conflict("Another role already has this name.", errors={"name": ["Already in use."]})


def delete_role(session: Session, role: Role) -> None:
    holders = session.scalar(select(func.count()).select_from(Grant).where(Grant.role_id == role.id))
    if holders:
        raise conflict(f"{holders} grant(s) still use this role; remove them first.", holders=holders)
    session.delete(role)


def visible_locations(session: Session, caller: Identity):
    statement = select(Location).order_by(Location.name)
    if not any(caller.has(p) for p in SEES_EVERY_LOCATION):
        statement = statement.where(Location.id.in_(list(caller.locations)))
    return statement


def get_location(session: Session, caller: Identity, location_id: int) -> Location:
    location = session.get(Location, location_id)
    if location is None:
        raise not_found("location")
    if location.id not in caller.locations and not any(caller.has(p) for p in SEES_EVERY_LOCATION):
        raise Problem(403, "You hold no rights at this location.", type="urn:vigil:problem:forbidden")
    return location


def check_location_name_free(session: Session, name: str, exclude: int | None = None) -> None:
    existing = session.scalar(select(Location).where(func.lower(Location.name) == name.lower()))
    if existing is not None and existing.id != exclude:
        raise conflict("Another location already has this name.", errors={"name": ["Already in use."]})


def check_api_key_rights(session: Session, caller: Identity, permissions: list[str],
                         location_ids: list[int] | None) -> None:
    """A key may carry only rights its creator holds, at locations that exist."""
    every = all_location_ids(session)
    if location_ids is not None:
        unknown = sorted(set(location_ids) - set(every))
        if unknown:
            raise validation_problem({"location_ids": [f"No such location: {', '.join(map(str, unknown))}."]})
        if set(permissions) <= GLOBAL_PERMISSIONS and location_ids:
            raise validation_problem({"location_ids": ["Only location permissions are granted per location."]})
    missing = exceeds(caller, set(permissions), location_ids, every)
    if missing:
        raise Problem(403, "An API key can only carry permissions you hold where it applies.",
                      type="urn:vigil:problem:forbidden", errors={"permissions": [f"Not yours to give: {p}" for p in missing]})


def get_api_key(session: Session, key_id: int) -> ApiKey:
    key = session.get(ApiKey, key_id)
    if key is None:
        raise not_found("API key")
    return key
