"""Commands: the one way a change is made, from a view, a Celery task or a script alike.

A command is a function ``name(ctx, ...)`` decorated with :func:`command`. It receives a
:class:`Context` (the session, the outbox, who is acting, the field cipher, the caller's
``If-Match``), checks the caller's rights itself (``ctx.require``), writes, adds its events to
the outbox, and runs in one transaction: committed when it returns, rolled back when it raises.
Nothing here needs Flask; the request layer builds the context with
:func:`vigil_shared.web.request_context`, a task or a script with :meth:`Context.of`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum
from functools import wraps
from typing import Any, Final, Generic, NamedTuple, Protocol, Self, TypeVar

from sqlalchemy.orm import Session

from .crypto import FieldCipher
from .db import version_of
from .errors import FORBIDDEN, STALE, Problem, not_found
from .identity import Identity
from .messaging.outbox import Outbox


class _Anywhere(Enum):
    TOKEN = "anywhere"


ANYWHERE: Final = _Anywhere.TOKEN  # "at some location": distinct from None, a record whose location is unknown
# How the history names the way a change came in, by the kind of caller.
SOURCES = {"user": "api", "api_key": "integration", "service": "workflow"}


def source_of(identity: Identity) -> str:
    """How the history names a change made by ``identity``: ``api``, ``integration`` or ``workflow``."""
    return SOURCES.get(identity.kind, "api")


_IN_COMMAND = "vigil_in_command"
_AFTER_COMMIT = "vigil_after_commit"

F = TypeVar("F", bound=Callable[..., Any])
R = TypeVar("R")


class _Runtime(Protocol):
    """What :meth:`Context.of` reads of a service's runtime (``vigil_shared.service``, a layer above this one)."""

    @property
    def cipher(self) -> FieldCipher: ...

    def outbox(self, request_id: str | None = None) -> Outbox: ...


def forbidden(permission: str) -> Problem:
    return Problem(403, f"You need the '{permission}' permission for this.", type=FORBIDDEN, permission=permission)


def refuse_on_record(identity: Identity, permission: str, location_id: int | None, missing: str | Problem) -> None:
    """The one rule for a record loaded by id for a request: nothing when the caller holds ``permission``
    at the record's location, otherwise the very problem a nonexistent id answers: ``not_found(missing)``
    for the name its lookup gives (``"customer"``), or ``missing`` itself when that lookup answers another
    problem (a create under a customer the service cannot confirm: 422 ``No such customer``).

    A caller holding the permission only at other locations, or holding no right at the record's
    location at all, learns nothing from the answer: it is the same problem, built by the same call, as
    for an id that was never used, and it costs no extra read. Only a caller who lacks ``permission``
    everywhere yet holds rights where the record is gets 403: they already know they have no access,
    and the answer does not depend on which record they named.
    """
    if identity.can(permission, location_id):
        return
    if identity.can_anywhere(permission) or location_id is None or not identity.locations.get(location_id):
        raise not_found(missing) if isinstance(missing, str) else missing
    raise forbidden(permission)


def etag_of(resource_id: object, version: int) -> str:
    return f'"{resource_id}.{version}"'


def ensure_version(if_match: str | None, resource_id: object, version: int) -> None:
    """412 when ``if_match`` names another version of the resource; none means the last write wins."""
    if not if_match:
        return
    current = etag_of(resource_id, version)
    candidates = [tag.strip() for tag in if_match.split(",")]
    if "*" in candidates or current in candidates:
        return
    raise Problem(
        412,
        "The record changed since you read it. Reload it and apply your change again.",
        type=STALE,
        headers={"ETag": current},
    )


@dataclass(frozen=True)
class Context:
    """What every command needs: the session, the outbox, who is acting, the field cipher.

    ``if_match`` is the version the caller last read (a request's ``If-Match``; ``None`` from a
    task or a script: the last write wins). ``source`` is how the change came in, as history
    records it (``api``, ``integration``, ``workflow``…), by default from the identity's kind.
    """

    session: Session
    identity: Identity
    # A service's context always has both (``Context.of``, ``web.request_context``); the gateway's,
    # which owns no events or encrypted fields, has neither and never reads them.
    outbox: Outbox = None  # type: ignore[assignment]
    cipher: FieldCipher = field(default=None, repr=False)  # type: ignore[assignment]
    request_id: str | None = None
    if_match: str | None = None
    source: str = ""

    def __post_init__(self) -> None:
        if not self.source:
            object.__setattr__(self, "source", source_of(self.identity))
        if self.request_id is None:
            object.__setattr__(self, "request_id", self.identity.request_id)

    @classmethod
    def of(cls, runtime: _Runtime, session: Session, identity: Identity, **options: Any) -> Self:
        """A context for a task or a script, from the service's runtime (its outbox and cipher)."""
        request_id = options.pop("request_id", None) or identity.request_id
        return cls(
            session=session,
            identity=identity,
            outbox=runtime.outbox(request_id),
            cipher=runtime.cipher,
            request_id=request_id,
            **options,
        )

    def can(self, permission: str, location_id: int | None | _Anywhere = ANYWHERE) -> bool:
        if location_id is ANYWHERE:
            return self.identity.can_anywhere(permission)
        return self.identity.can(permission, location_id)

    def require(
        self, permission: str, location_id: int | None | _Anywhere = ANYWHERE, *, field: str | None = None
    ) -> None:
        """403 unless the caller holds ``permission`` at ``location_id`` (or at some location when omitted).

        A ``None`` location (a record not yet placed) is refused for location permissions, never
        read as "anywhere". ``field`` names the field the permission is needed to set (``errors``).
        """
        if self.can(permission, location_id):
            return
        problem = forbidden(permission)
        if field is not None:
            problem.errors = {field: [f"You need the '{permission}' permission to set this field."]}
        raise problem

    def require_on(self, permission: str, location_id: int | None, missing: str | Problem) -> None:
        """For a record loaded by id: the problem a nonexistent id answers (``missing``: the name its
        lookup gives, or that problem) unless the caller holds ``permission`` at ``location_id``
        (:func:`refuse_on_record`). Body inputs (a location to create in, a field to set) use
        :meth:`require`, which answers 403."""
        refuse_on_record(self.identity, permission, location_id, missing)

    def load_on(self, read: Callable[[bool], R], check: Callable[[R], None], *, lock: bool) -> R:
        """A record loaded by id for a request, its scope checked before any lock is taken.

        ``read(locked)`` finds the record (raising the unknown-id problem) and, with ``locked``, takes
        its row lock (``SELECT … FOR UPDATE``); ``check(record)`` refuses a caller outside its scope
        (:meth:`require_on`). The first read takes no lock, so a caller outside the record's scope is
        answered at once, like for an unknown id, and never waits behind a transaction that holds the
        row: how long the answer took would tell them the record exists. For a write (``lock``) the row
        is then locked and checked again, since the record may have moved while the lock was awaited.
        """
        record = read(False)
        check(record)
        if not lock:
            return record
        record = read(True)
        check(record)
        return record

    def check_version(self, resource_id: object, version: int) -> None:
        """412 when the caller read another version than the stored one (see :func:`ensure_version`)."""
        ensure_version(self.if_match, resource_id, version)

    def after_commit(self, action: Callable[[], None]) -> None:
        """Runs ``action`` once the command's transaction is committed (removing files, say); never on rollback."""
        self.session.info.setdefault(_AFTER_COMMIT, []).append(action)


def command(func: F) -> F:
    """Runs ``func(ctx, ...)`` as one unit of work: committed when it returns, rolled back when it raises.

    A command called by another command joins the caller's transaction, so a composed change is
    still one commit. The transaction is the session's current one: rows a caller read and locked
    before (the record a request checked before parsing its body) stay locked until the commit.
    """

    @wraps(func)
    def wrapper(ctx: Context, *args: Any, **kwargs: Any) -> Any:
        session = ctx.session
        if session.info.get(_IN_COMMAND):
            return func(ctx, *args, **kwargs)
        session.info[_IN_COMMAND] = True
        try:
            result = func(ctx, *args, **kwargs)
            session.commit()
        except BaseException:
            session.info.pop(_AFTER_COMMIT, None)
            session.rollback()
            raise
        finally:
            session.info.pop(_IN_COMMAND, None)
        for action in session.info.pop(_AFTER_COMMIT, []):
            action()
        return result

    return wrapper  # type: ignore[return-value]


T = TypeVar("T")


class CatalogCommands(NamedTuple, Generic[T]):
    """The three writes of a company-wide catalog (tags, custom fields, system kinds…), as commands.

    Each needs ``permission`` (anywhere: a catalog names no location); ``update`` and ``delete``
    first read the entry (404) and check the caller's ``If-Match`` against its version (412, see ``db.version_of``).
    The domain functions do the rest (uniqueness, what an entry still in use forbids).
    """

    create: Callable[[Context, dict[str, Any]], T]
    update: Callable[[Context, int, dict[str, Any]], T]
    delete: Callable[[Context, int], None]


def catalog_commands(
    name: str,
    permission: str,
    get: Callable[[Session, int], T],
    create: Callable[[Session, dict[str, Any]], T],
    update: Callable[[Session, T, dict[str, Any]], T],
    delete: Callable[[Session, T], object],
) -> CatalogCommands[T]:
    """``create_<name>``, ``update_<name>`` and ``delete_<name>`` commands over a catalog's domain functions
    (``get``, ``create``, ``update``, ``delete``, in that order)."""

    def current(ctx: Context, entry_id: int) -> T:
        ctx.require(permission)
        entry = get(ctx.session, entry_id)
        ctx.check_version(getattr(entry, "id"), version_of(entry))  # noqa: B009 - T is any model
        return entry

    def create_entry(ctx: Context, data: dict[str, Any]) -> T:
        ctx.require(permission)
        return create(ctx.session, data)

    def update_entry(ctx: Context, entry_id: int, changes: dict[str, Any]) -> T:
        return update(ctx.session, current(ctx, entry_id), changes)

    def delete_entry(ctx: Context, entry_id: int) -> None:
        delete(ctx.session, current(ctx, entry_id))

    for verb, function in (("create", create_entry), ("update", update_entry), ("delete", delete_entry)):
        function.__name__ = function.__qualname__ = f"{verb}_{name}"
    return CatalogCommands(command(create_entry), command(update_entry), command(delete_entry))
