"""From a user or an API key to the identity the services receive: effective rights per location."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from vigil_shared.db import utcnow
from vigil_shared.identity import Identity
from vigil_shared.permissions import GLOBAL_PERMISSIONS, LOCATION_PERMISSIONS

from .models import ApiKey, Location, User


def all_location_ids(session: Session) -> list[int]:
    return list(session.scalars(select(Location.id).order_by(Location.id)))


def effective_rights(session: Session, user: User) -> tuple[frozenset[str], dict[int, frozenset[str]]]:
    """Company-wide permissions, and permissions per location, from the user's role grants."""
    locations = all_location_ids(session)
    if user.is_admin:
        full = frozenset(LOCATION_PERMISSIONS)
        return frozenset(GLOBAL_PERMISSIONS), {loc: full for loc in locations}
    company: set[str] = set()
    per_location: dict[int, set[str]] = defaultdict(set)
    for grant in user.grants:
        granted = set(grant.role.permissions)
        company |= granted & GLOBAL_PERMISSIONS
        located = granted & LOCATION_PERMISSIONS
        if located:
            for loc in [grant.location_id] if grant.location_id is not None else locations:
                per_location[loc] |= located
    return frozenset(company), {loc: frozenset(perms) for loc, perms in per_location.items()}


def everywhere_permissions(user: User | None) -> frozenset[str]:
    """The location permissions ``user`` holds at every location, including those opened later: all of
    them for an administrator, else those of the roles granted with no location."""
    if user is None:
        return frozenset()
    if user.is_admin:
        return frozenset(LOCATION_PERMISSIONS)
    return frozenset(
        p
        for grant in user.grants
        if grant.location_id is None
        for p in grant.role.permissions
        if p in LOCATION_PERMISSIONS
    )


def user_identity(session: Session, user: User, request_id: str | None, client_ip: str | None) -> Identity:
    company, per_location = effective_rights(session, user)
    return Identity(
        subject=str(user.id),
        username=user.username,
        kind="user",
        permissions=company,
        locations=per_location,
        request_id=request_id,
        client_ip=client_ip,
    )


def key_lineage(session: Session, key: ApiKey) -> tuple[bool, datetime | None]:
    """Whether every key ``key`` was made with (one made with a key, that one with another…) still
    works, and the earliest expiry along the way (when the key itself stops working at the latest).

    A key made with a key answers to that key too: revoking or outliving it stops the new one, so a
    short-lived or leaked key cannot mint a lasting one."""
    expires, seen, parent_id = key.expires_at, {key.id}, key.made_with_key_id
    now = utcnow()
    while parent_id is not None and parent_id not in seen:
        seen.add(parent_id)
        parent = session.get(ApiKey, parent_id)
        if (
            parent is None
            or parent.revoked_at is not None
            or (parent.expires_at is not None and parent.expires_at < now)
        ):
            return False, None
        if parent.expires_at is not None and (expires is None or parent.expires_at < expires):
            expires = parent.expires_at
        parent_id = parent.made_with_key_id
    return True, expires


def api_key_identity(session: Session, key: ApiKey, request_id: str | None, client_ip: str | None) -> Identity | None:
    """The key's own scope intersected with its creator's rights *now*; None once the creator is gone
    or deactivated, or the key it was made with is revoked or expired (the key then stops working).
    A key never outlives, nor outgrows, its creator or the key it was made with."""
    creator = session.get(User, key.created_by) if key.created_by is not None else None
    if creator is None or not creator.active or not key_lineage(session, key)[0]:
        return None
    company, per_location = effective_rights(session, creator)
    granted = set(key.permissions)
    located = granted & LOCATION_PERMISSIONS
    locations = key.location_ids if key.location_ids is not None else all_location_ids(session)
    scoped = {loc: frozenset(located & per_location.get(loc, frozenset())) for loc in locations}
    return Identity(
        subject=f"api_key:{key.id}",
        username=f"api-key:{key.name}",
        kind="api_key",
        permissions=frozenset(granted & GLOBAL_PERMISSIONS & company),
        locations={loc: perms for loc, perms in scoped.items() if perms},
        request_id=request_id,
        client_ip=client_ip,
    )


def exceeds(
    caller: Identity, permissions: set[str], location_ids: list[int] | None, every_location: list[int]
) -> list[str]:
    """The permissions a caller would hand out without holding them where they would apply."""
    targets = location_ids if location_ids is not None else every_location
    missing = []
    for permission in sorted(permissions):
        if permission in GLOBAL_PERMISSIONS:
            if not caller.has(permission):
                missing.append(permission)
        elif not all(caller.can(permission, loc) for loc in targets):
            missing.append(permission)
    return missing
