"""The HTTP side of a company-wide catalog: list, create, read, change and delete, each fully documented.

Tags, custom field definitions, system kinds, roles and office locations are all the same five
operations over a table of named entries; only their schemas, permissions, wording and the domain
calls differ. :func:`register_catalog` builds the two views (``<collection>`` and ``<item>``,
the same endpoint names a hand-written ``MethodView`` pair would have, so ``url_for`` and the
OpenAPI document do not change) from one declaration per operation:

- the catalog names its two permissions once: ``reads`` (list and read; any signed-in caller by
  default) and ``writes`` (create, update, delete; ``catalogs.manage`` by default), each the view's
  ``@requires`` (documented as ``x-vigil-permission``), and the
  wording of its stale ``If-Match`` answers (412 of update, then of delete);
- :class:`Operation` holds what else OpenAPI shows for it: the docstring (summary, then description
  after a blank line) and the 409 it documents, if any (``conflict="A tag with this name exists"``);
- its ``handler`` is the one call the view makes: a query for the reads, a command for the writes
  (:func:`vigil_shared.commands.catalog_commands` makes the usual three).

Every view parses, calls its handler once and renders, as every other view does: ``POST`` is
``@idempotent`` and answers 201 with ``Location`` and ``ETag``; ``PATCH``/``DELETE`` pass the
caller's ``If-Match`` to the command (412 when stale); a missing entry is the handler's 404.
An operation left out (``delete=None``) is not routed: its method answers 405.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from flask import request, url_for
from flask.views import MethodView
from flask_smorest import Blueprint
from marshmallow import Schema
from sqlalchemy.orm import Session

from .authz import requires
from .http import STALE_VERSION, Page
from .idempotency import idempotent
from .permissions import AUTHENTICATED

Decorator = Callable[[Callable[..., Any]], Callable[..., Any]]
# The services' wording of a stale ``If-Match`` answer (the gateway's is shorter).
NOT_CHANGED = STALE_VERSION
NOT_DELETED = "`If-Match` names an older version; nothing was deleted"


@dataclass(frozen=True)
class Operation:
    """One operation of a catalog: what it does (its docstring), what it calls, its 409 if any.

    Handlers by operation: ``list(session, **query)`` returns the response (:func:`page_response`
    for a paginated one); ``read(session, entry_id)`` the entry; ``create(ctx, data)``,
    ``update(ctx, entry_id, changes)`` and ``delete(ctx, entry_id)`` are commands.
    """

    doc: str
    handler: Callable[..., Any]
    conflict: str | None = None  # the 409 answer it documents


@dataclass(frozen=True)
class CatalogSchemas:
    """The schemas of a catalog: one entry, the create and patch bodies, the list's query and answer."""

    item: type[Schema]
    create: type[Schema]
    patch: type[Schema]
    query: type[Schema]
    page: type[Schema]


def page_response(page: Page) -> tuple[dict[str, Any], int, dict[str, str]]:
    """A list answer: the page's body with its ``Link`` header."""
    return page.body(), 200, page.headers()


def _documented(
    view: Callable[..., Any],
    operation: Operation,
    permission: str,
    decorators: list[Decorator],
    reads: Iterable[str] = (),
) -> Callable[..., Any]:
    """``view`` with the operation's docstring under ``@requires`` and ``decorators`` (outermost first).

    ``reads`` names the query or path arguments the view takes as keywords: its signature lists
    them, as a hand-written view's would, so a reader (or a test) sees what it reads.
    """
    view.__doc__ = operation.doc
    signature = inspect.signature(view)
    positional = [p for p in signature.parameters.values() if p.kind is not inspect.Parameter.VAR_KEYWORD]
    keywords = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY) for name in reads]
    view.__signature__ = signature.replace(parameters=[*positional, *keywords])  # type: ignore[attr-defined]
    for decorator in reversed([requires(permission), *decorators]):
        view = decorator(view)
    return view


def _answers(blp: Blueprint, operation: Operation, stale: str | None = None) -> list[Decorator]:
    """The operation's 409 (if it has one), then the 412 of a stale ``If-Match`` (update, delete)."""
    answers = {409: operation.conflict, 412: stale}
    return [blp.alt_response(status, description=text) for status, text in answers.items() if text]


def register_catalog(
    blp: Blueprint,
    names: tuple[str, str, str],
    schemas: CatalogSchemas,
    *,
    reads: str = AUTHENTICATED,
    writes: str = "catalogs.manage",
    session: Callable[[], Session],
    context: Callable[[str | None], Any],
    etag_headers: Callable[..., dict[str, str]],
    list: Operation,  # noqa: A002 - the operation's name
    create: Operation,
    read: Operation,
    update: Operation,
    delete: Operation | None = None,
    stale: tuple[str, str] = (NOT_CHANGED, NOT_DELETED),
    path: str = "",
) -> tuple[type[MethodView], type[MethodView]]:
    """Routes ``path`` (the list and ``POST``) and ``path/<int:id_name>`` (one entry) on ``blp``.

    ``names`` are ``(collection, item, id_name)``: the two views (their endpoints are
    ``<blueprint>.<name>``) and the entry's path argument; ``reads`` and ``writes`` the permissions;
    ``session`` and ``context`` are the service's request session and command context (called with
    the ``If-Match`` for ``PATCH``/``DELETE``); ``etag_headers(entry, **extra)`` the entry's headers.
    """
    collection, item, id_name = names

    def list_entries(self: MethodView, **query: Any) -> Any:
        return list.handler(session(), **query)

    def create_entry(self: MethodView, data: dict[str, Any]) -> Any:
        entry = create.handler(context(None), data)
        location = url_for(f"{blp.name}.{item}", **{id_name: entry.id})
        return entry, 201, etag_headers(entry, Location=location)

    def read_entry(self: MethodView, **path_args: int) -> Any:
        entry = read.handler(session(), path_args[id_name])
        return entry, 200, etag_headers(entry)

    def update_entry(self: MethodView, changes: dict[str, Any], **path_args: int) -> Any:
        entry = update.handler(context(_if_match()), path_args[id_name], changes)
        return entry, 200, etag_headers(entry)

    def delete_entry(self: MethodView, **path_args: int) -> None:
        assert delete is not None
        delete.handler(context(_if_match()), path_args[id_name])

    collection_methods = {
        "get": _documented(
            list_entries,
            list,
            reads,
            [blp.arguments(schemas.query, location="query", as_kwargs=True), blp.response(200, schemas.page)],
            reads=schemas.query().fields,
        ),
        "post": _documented(
            create_entry,
            create,
            writes,
            [idempotent, blp.arguments(schemas.create), blp.response(201, schemas.item), *_answers(blp, create)],
        ),
    }
    item_methods = {
        "get": _documented(read_entry, read, reads, [blp.response(200, schemas.item), *_answers(blp, read)], [id_name]),
        "patch": _documented(
            update_entry,
            update,
            writes,
            [blp.arguments(schemas.patch), blp.response(200, schemas.item), *_answers(blp, update, stale[0])],
            [id_name],
        ),
    }
    if delete is not None:
        item_methods["delete"] = _documented(
            delete_entry, delete, writes, [blp.response(204), *_answers(blp, delete, stale[1])], [id_name]
        )
    collection_view = type(collection, (MethodView,), {"__module__": blp.import_name, **collection_methods})
    item_view = type(item, (MethodView,), {"__module__": blp.import_name, **item_methods})
    blp.route(path)(collection_view)
    blp.route(f"{path}/<int:{id_name}>")(item_view)
    return collection_view, item_view


def _if_match() -> str | None:
    return request.headers.get("If-Match")
