"""The command context of a gateway request: its session, the caller and their sign-in or key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import g
from flask_smorest import Blueprint
from marshmallow import Schema

from vigil_shared.idempotency import idempotent
from vigil_shared.web import current_identity, if_match, requires  # noqa: F401 - views read if_match() here

from ..commands import Context
from ..context import database, db_session, passwords, signed_in_user


def context(version: str | None = None) -> Context:
    """The command context; ``version`` is the caller's ``If-Match`` (``if_match()``) for a view that honours it."""
    return Context(
        session=db_session(),
        identity=current_identity(),
        request_id=g.get("request_id"),
        if_match=version,
        user=signed_in_user(),
        key_id=g.get("key_id"),
        key_creator_id=g.get("key_creator_id"),
        session_id=g.get("session_id"),
        database=database(),
        passwords=passwords(),
    )


STALE = "If-Match names an older version"


def at_version(
    blp: Blueprint,
    permission: str,
    arguments: type[Schema] | None = None,
    response: type[Schema] | None = None,
    *,
    once: bool = False,
    refusals: dict[int, str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The decorators of a view that changes or deletes a record at the version the caller read
    (``If-Match``, 412 otherwise): ``permission``, ``@idempotent`` when ``once``, the ``arguments``
    schema, 200 with ``response`` (204 without), and the other ``refusals`` it documents."""

    # a tuple, so only the views that take a key are seen calling ``idempotent`` (the parameters test
    # follows the calls a view's decorators make)
    replayable = (idempotent,) if once else ()

    def decorate(view: Callable[..., Any]) -> Callable[..., Any]:
        view = blp.alt_response(412, description=STALE)(view)
        for status, description in reversed(list((refusals or {}).items())):
            view = blp.alt_response(status, description=description)(view)
        view = blp.response(200, response)(view) if response is not None else blp.response(204)(view)
        if arguments is not None:
            view = blp.arguments(arguments)(view)
        for replay in replayable:
            view = replay(view)
        return requires(permission)(view)

    return decorate
