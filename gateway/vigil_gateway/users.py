"""Users, their credentials and their role grants. Passwords are hashed with Argon2id (:mod:`.passwords`)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from vigil_shared.db import added, utcnow
from vigil_shared.errors import conflict, get_or_404, validation_problem
from vigil_shared.identity import Identity

from .identity_cache import bump
from .models import Grant, Location, Role, User
from .passwords import Passwords
from .rights import ensure_can_add_grants

DEFAULT_LOCATION = "Main office"


def find_user(session: Session, username: str) -> User | None:
    return session.scalar(select(User).where(func.lower(User.username) == username.lower()))


def password_matches(passwords: Passwords, user: User | None, password: str) -> bool:
    """Constant-time whatever the user: an unknown username is checked against a dummy hash."""
    return passwords.matches(user.password_hash if user else None, password)


def set_password(passwords: Passwords, user: User, password: str) -> None:
    user.password_hash = passwords.hash(password)
    user.password_changed_at = utcnow()


def rehash_if_needed(passwords: Passwords, user: User, password: str) -> None:
    """A hash made with weaker (or other) parameters than the configured ones is replaced on sign-in."""
    if passwords.needs_rehash(user.password_hash):
        user.password_hash = passwords.hash(password)


def get_user(session: Session, user_id: int) -> User:
    return get_or_404(session, User, user_id, "user")


def _check_username_free(session: Session, username: str, exclude: int | None = None) -> None:
    existing = find_user(session, username)
    if existing is not None and existing.id != exclude:
        raise conflict("Another user already has this username.", errors={"username": ["Already in use."]})


def replace_grants(session: Session, user: User, grants: list[dict], caller: Identity) -> None:
    """Sets the user's role grants to exactly ``grants`` (``[{role_id, location_id|None}]``); every grant
    added must be the caller's to give (:func:`rights.ensure_can_add_grants`)."""
    errors: dict[str, list[str]] = {}
    seen = set()
    for index, grant in enumerate(grants):
        if session.get(Role, grant["role_id"]) is None:
            errors.setdefault(f"grants.{index}.role_id", []).append("No such role.")
        if grant.get("location_id") is not None and session.get(Location, grant["location_id"]) is None:
            errors.setdefault(f"grants.{index}.location_id", []).append("No such location.")
        seen.add((grant["role_id"], grant.get("location_id")))
    if errors:
        raise validation_problem(errors)
    ensure_can_add_grants(session, caller, {(g.role_id, g.location_id) for g in user.grants}, seen)
    user.grants.clear()
    session.flush()
    for role_id, location_id in sorted(seen, key=lambda pair: (pair[0], pair[1] or 0)):
        user.grants.append(Grant(role_id=role_id, location_id=location_id))


def create_user(session: Session, passwords: Passwords, data: dict, caller: Identity) -> User:
    _check_username_free(session, data["username"])
    user = User(
        username=data["username"],
        email=data.get("email"),
        name=data.get("name"),
        active=data.get("active", True),
        is_admin=data.get("is_admin", False),
        failed_logins=0,
    )
    set_password(passwords, user, data["password"])
    added(session, user)
    if data.get("grants"):
        replace_grants(session, user, data["grants"], caller)
    return user


def active_admins(session: Session) -> int:
    return (
        session.scalar(select(func.count()).select_from(User).where(User.is_admin.is_(True), User.active.is_(True)))
        or 0
    )


def would_remove_last_admin(session: Session, user: User, changes: dict) -> bool:
    """Whether ``changes`` would leave no active administrator, as committed now: the caller has made
    changes to users take turns first (``update_user``), and ``user`` is read again (another change may
    have deactivated them meanwhile)."""
    losing = (changes.get("active") is False and user.active) or (changes.get("is_admin") is False and user.is_admin)
    if not losing:
        return False
    session.refresh(user)
    return bool(user.is_admin and user.active and active_admins(session) <= 1)


@dataclass(frozen=True)
class AdminSetup:
    username: str
    created: bool
    password: str | None  # only when this call set it


def ensure_admin(
    session: Session, passwords: Passwords, username: str, password: str | None, reset: bool = False
) -> AdminSetup:
    """Creates the first admin (and a first office location) once; later calls change nothing unless ``reset``."""
    if session.scalar(select(func.count()).select_from(Location)) == 0:
        session.add(Location(name=DEFAULT_LOCATION, active=True))
    user = find_user(session, username)
    if user is not None and not reset:
        return AdminSetup(username, created=False, password=None)
    password = password or secrets.token_urlsafe(18)
    if user is None:
        user = User(username=username, name="Administrator", is_admin=True, active=True, failed_logins=0)
        set_password(passwords, user, password)
        session.add(user)
        return AdminSetup(username, created=True, password=password)
    set_password(passwords, user, password)
    user.active, user.is_admin, user.failed_logins, user.locked_until = True, True, 0, None
    bump(session)
    return AdminSetup(username, created=False, password=password)
