"""Roles, locations and API keys, and the one rule for handing out rights.

Two rules, each in one place, used by every path that grants or acts on an account:

- :func:`ensure_can_grant`: nobody hands out — through a role's permissions, a role grant, an API
  key — a permission they do not hold themselves at every location where it would apply.
- :func:`ensure_can_act_on`: nobody acts on an account (password, email, name, activation, grants)
  that holds a right they do not hold, so taking it over gains nothing. An *administrator* is a user
  with ``is_admin`` (every permission at every location, including locations opened later): only
  administrators act on administrator accounts, and only they give or remove ``is_admin``.
"""

from __future__ import annotations

from typing import Literal

from flask import g, has_request_context
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil_shared.errors import Problem, conflict, get_or_404, not_found, validation_problem
from vigil_shared.identity import Identity
from vigil_shared.permissions import GLOBAL_PERMISSIONS, LOCATION_PERMISSIONS

from .access import all_location_ids, effective_rights, everywhere_permissions, exceeds
from .models import ApiKey, Grant, Location, Role, User

FORBIDDEN = "urn:vigil:problem:forbidden"


def is_administrator(user: User | None) -> bool:
    """A user with ``is_admin``: every permission in every location (see the module docstring)."""
    return bool(user is not None and user.is_admin)


def ensure_can_grant(
    session: Session,
    caller: Identity,
    permissions,
    location_ids: list[int] | None,
    *,
    field: str,
    anywhere: bool = False,
    later_locations: bool = True,
    verb: str = "give",
) -> None:
    """403 unless ``caller`` holds each of ``permissions`` wherever the grant applies.

    ``location_ids`` None: every location. ``anywhere``: the grant applies nowhere yet (a role no one
    holds), so holding a location permission at one location is enough; granting that role later
    goes through this rule again, at its location. A role granted at every location (None) reaches the
    locations opened later too, so the caller must hold its permissions there as well (through a grant
    at every location, or as an administrator); ``later_locations=False`` for what is bounded by the
    caller's rights on every call anyway (API keys).
    """
    permissions = set(permissions)
    if anywhere:
        missing = sorted(p for p in permissions if not caller.can_anywhere(p))
    else:
        missing = exceeds(caller, permissions, location_ids, all_location_ids(session))
    messages = [f"Not yours to {verb}: {p}" for p in missing]
    if location_ids is None and not anywhere and later_locations:
        # Every location includes those opened later: holding it at each location open today is not enough.
        forever = caller_everywhere_permissions(session)
        messages += [
            f"Not yours to {verb} at every location, including those opened later: {p}"
            for p in sorted(permissions & LOCATION_PERMISSIONS)
            if p not in missing and p not in forever
        ]
    if messages:
        raise Problem(
            403,
            f"You can only {verb} permissions you hold yourself, where you hold them.",
            type=FORBIDDEN,
            errors={field: messages},
        )


def caller_everywhere_permissions(session: Session) -> frozenset[str]:
    """The location permissions the calling user or key holds at every location, including those
    opened later (:func:`access.everywhere_permissions`); a key limited to locations holds none so."""
    if not has_request_context():
        return frozenset(LOCATION_PERMISSIONS)  # the command line acts as the operator
    user_id, key_id = g.get("user_id"), g.get("key_id")
    if user_id is not None:
        return everywhere_permissions(session.get(User, user_id))
    key = session.get(ApiKey, key_id) if key_id is not None else None
    if key is None or key.location_ids is not None or key.created_by is None:
        return frozenset()
    return frozenset(key.permissions) & everywhere_permissions(session.get(User, key.created_by))


def ensure_can_act_on(session: Session, caller: Identity, caller_user: User | None, target: User) -> None:
    """403 unless the caller may change ``target``'s account: administrators only for administrators,
    and otherwise only a caller holding every right ``target`` holds, where ``target`` holds it."""
    if is_administrator(caller_user):
        return
    if target.is_admin:
        raise Problem(403, "Only an administrator can change an administrator's account.", type=FORBIDDEN)
    company, per_location = effective_rights(session, target)
    missing = {p for p in company if not caller.has(p)}
    missing |= {p for loc, perms in per_location.items() for p in perms if not caller.can(p, loc)}
    # What the target holds at every location reaches offices opened later: the caller must too.
    missing |= everywhere_permissions(target) - caller_everywhere_permissions(session)
    if missing:
        raise Problem(
            403,
            "This user holds rights you do not hold; someone holding them must change this account.",
            type=FORBIDDEN,
            errors={"user": [f"Holds what you do not: {p}" for p in sorted(missing)]},
        )


def role_reach(session: Session, role: Role) -> list[int] | None | Literal[False]:
    """Where a role's permissions apply today: None for every location, the location ids, or False
    when no one holds it."""
    locations = list(session.scalars(select(Grant.location_id).where(Grant.role_id == role.id).distinct()))
    if not locations:
        return False
    if any(loc is None for loc in locations):
        return None
    return sorted(loc for loc in locations if loc is not None)


def ensure_can_set_role_permissions(session: Session, caller: Identity, role: Role | None, permissions) -> None:
    """Adding a permission to a role grants it to every holder, removing one takes it from them: the
    caller must hold each changed permission wherever the role's holders do (so nobody strips rights
    from someone holding more than they do)."""
    before = set(role.permissions if role is not None else ())
    added, removed = set(permissions) - before, before - set(permissions)
    reach = role_reach(session, role) if role is not None else False
    for changed, verb in ((added, "give"), (removed, "take away")):
        if changed:
            ensure_can_grant(
                session,
                caller,
                changed,
                None if reach is False else reach,
                field="permissions",
                anywhere=reach is False,
                verb=verb,
            )


def ensure_can_add_grants(session: Session, caller: Identity, current: set[tuple], requested: set[tuple]) -> None:
    """Each new ``(role_id, location_id)`` grant: the caller holds the role's permissions there."""
    for role_id, location_id in sorted(requested - current, key=lambda pair: (pair[0], pair[1] or 0)):
        role = session.get(Role, role_id)
        assert role is not None, "grants name existing roles (checked on input)"
        ensure_can_grant(
            session, caller, role.permissions, None if location_id is None else [location_id], field="grants"
        )


SEES_EVERY_LOCATION = ("locations.manage", "users.manage", "roles.manage")


def get_role(session: Session, role_id: int) -> Role:
    return get_or_404(session, Role, role_id, "role")


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
    """The location, or the same 404 for an unknown one and for one the caller holds no rights at (an
    answer that differs would tell which ids exist; vigil_shared.commands.refuse_on_record)."""
    location = session.get(Location, location_id)
    if location is None or (
        location.id not in caller.locations and not any(caller.has(p) for p in SEES_EVERY_LOCATION)
    ):
        raise not_found("location")
    return location


def check_location_name_free(session: Session, name: str, exclude: int | None = None) -> None:
    existing = session.scalar(select(Location).where(func.lower(Location.name) == name.lower()))
    if existing is not None and existing.id != exclude:
        raise conflict("Another location already has this name.", errors={"name": ["Already in use."]})


def check_api_key_rights(
    session: Session, caller: Identity, permissions: list[str], location_ids: list[int] | None
) -> None:
    """A key may carry only rights its creator holds, at locations that exist."""
    every = all_location_ids(session)
    if location_ids is not None:
        unknown = sorted(set(location_ids) - set(every))
        if unknown:
            raise validation_problem({"location_ids": [f"No such location: {', '.join(map(str, unknown))}."]})
        if set(permissions) <= GLOBAL_PERMISSIONS and location_ids:
            raise validation_problem({"location_ids": ["Only location permissions are granted per location."]})
    # A key's rights are intersected with its creator's on every call, so a location opened later
    # gives it nothing its creator lacks there: holding each permission at every location today is enough.
    ensure_can_grant(session, caller, permissions, location_ids, field="permissions", later_locations=False)


def ensure_can_revoke(
    session: Session, caller: Identity, caller_user: User | None, key: ApiKey, caller_key_creator: int | None = None
) -> None:
    """A key is its creator's credential: revoking it acts on their account (:func:`ensure_can_act_on`),
    so only its creator (or a key answering to them) or someone who may act on them revokes it."""
    if key.created_by is None:
        return  # no creator: the key no longer works anyway
    acting_for = caller_user.id if caller_user is not None else caller_key_creator
    if acting_for == key.created_by:
        return
    creator = session.get(User, key.created_by)
    if creator is not None:
        ensure_can_act_on(session, caller, caller_user, creator)


def get_api_key(session: Session, key_id: int) -> ApiKey:
    return get_or_404(session, ApiKey, key_id, "API key")
