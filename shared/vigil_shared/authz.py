"""Who is calling and what they may do: the caller's identity for this request, and permission checks.

The gateway and the services share these; ``vigil_shared.web`` re-exports them for views.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any, cast

from flask import g

from .apidoc import View, document
from .commands import ANYWHERE, _Anywhere, forbidden
from .errors import UNAUTHENTICATED, Problem
from .identity import Identity
from .permissions import AUTHENTICATED, scope_of


def current_identity() -> Identity:
    identity = g.get("identity")
    if identity is None:
        raise Problem(401, "Authentication required.", type=UNAUTHENTICATED)
    return cast(Identity, identity)


def require(permission: str, location_id: int | None | _Anywhere = ANYWHERE) -> Identity:
    """403 unless the caller holds ``permission`` at ``location_id`` (or at some location when omitted).

    A ``None`` location (a record not yet placed) is refused for location permissions, never read as
    "anywhere".
    """
    identity = current_identity()
    allowed = identity.can_anywhere(permission) if location_id is ANYWHERE else identity.can(permission, location_id)
    if not allowed:
        raise forbidden(permission)
    return identity


def requires(permission: str) -> Callable[[View], View]:
    """Refuses, before any parsing, callers who hold ``permission`` nowhere, and documents the rule.

    The operation's OpenAPI entry gets ``x-vigil-permission`` and ``x-vigil-scope`` (through
    :mod:`vigil_shared.apidoc`, whatever the decorator order); the route × role × location test
    reads them, so an operation without this decorator fails it. Place it above the flask-smorest
    decorators so the refusal comes before parsing. Location checks on the record itself belong
    to the command (``ctx.require(permission, location_id)``, :mod:`vigil_shared.commands`).
    """
    scope = "none" if permission == AUTHENTICATED else scope_of(permission)

    def decorator(view: View) -> View:
        @wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            if permission == AUTHENTICATED:
                current_identity()
            else:
                require(permission)
            return view(*args, **kwargs)

        return cast(View, document(wrapper, fields={"x-vigil-permission": permission, "x-vigil-scope": scope}))

    return decorator
