"""The command context of a gateway request: its session, the caller and their sign-in or key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import g
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema

from vigil_shared.idempotency import idempotent
from vigil_shared.web import current_identity, if_match, requires  # noqa: F401 - views read if_match() here

from ..commands import Context
from ..context import database, db_session, passwords, signed_in_user
from ..versions import etag_headers


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


def record_item(
    blp: Any,
    name: str,
    permission: str,
    schemas: tuple[type[Schema], type[Schema]],
    commands: tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]],
    docs: tuple[str, str, str],
) -> type[MethodView]:
    """The view ``name`` of one record (route it at ``…/<int:<id>>``), all three needing ``permission``:
    ``GET`` reads it, ``PATCH`` changes it and ``DELETE`` removes it at the version the caller read
    (:func:`at_version`). ``schemas`` are the record's and its patch body's; ``commands`` are
    ``read(ctx, id)``, ``update(ctx, id, changes)`` and ``delete(ctx, id)``; ``docs`` their docstrings."""
    schema, patch_schema = schemas
    read, update, delete = commands

    def get(self: MethodView, **path: int) -> Any:
        record = read(context(), *path.values())
        return record, 200, etag_headers(record)

    def patch(self: MethodView, changes: dict[str, Any], **path: int) -> Any:
        record = update(context(if_match()), *path.values(), changes)
        return record, 200, etag_headers(record)

    def remove(self: MethodView, **path: int) -> None:
        delete(context(if_match()), *path.values())

    get.__doc__, patch.__doc__, remove.__doc__ = docs
    methods = {
        "get": blp.read(permission, schema)(get),
        "patch": at_version(blp, permission, patch_schema, schema)(patch),
        "delete": at_version(blp, permission)(remove),
    }
    return type(name, (MethodView,), {"__module__": blp.import_name, **methods})
