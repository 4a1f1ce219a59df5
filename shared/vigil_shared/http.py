"""Conventions every list and single resource follows: pagination with Link headers, ETag/If-Match."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlencode

from apispec import BasePlugin
from flask import request
from marshmallow import Schema, fields, validate
from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from .commands import ensure_version
from .commands import etag_of as etag_of  # re-exported: views take the ETag helpers from here
from .db import version_of

V = TypeVar("V", bound=Callable[..., Any])
MAX_PER_PAGE = 100
STALE_VERSION = "`If-Match` names an older version; nothing was changed"
"""What a write that honours ``If-Match`` documents for its 412 answer."""


class PaginationArgs(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    per_page = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PER_PAGE))


def page_schema(item_schema: type[Schema], name: str, *, required: bool = True, **more: Any) -> type[Schema]:
    """The list envelope ``{"items", "page", "per_page", "total"}`` (and ``more`` fields) for OpenAPI and dumping."""
    return type(
        name,
        (Schema,),
        {
            "items": fields.List(fields.Nested(item_schema), required=required),
            "page": fields.Integer(required=required),
            "per_page": fields.Integer(required=required),
            "total": fields.Integer(required=required),
            **more,
        },
    )


@dataclass
class Page:
    items: list[Any]
    page: int
    per_page: int
    total: int

    def body(self) -> dict[str, Any]:
        return {"items": self.items, "page": self.page, "per_page": self.per_page, "total": self.total}

    def link_header(self) -> str:
        links = []
        base = request.path  # relative: resolved against the public URL the caller used
        args = request.args.to_dict()

        def url(page: int) -> str:
            return f"{base}?{urlencode(args | {'page': page, 'per_page': self.per_page})}"

        if self.page * self.per_page < self.total:
            links.append(f'<{url(self.page + 1)}>; rel="next"')
        if self.page > 1:
            links.append(f'<{url(self.page - 1)}>; rel="prev"')
        return ", ".join(links)

    def headers(self) -> dict[str, str]:
        link = self.link_header()
        return {"Link": link} if link else {}

    def answer(self, render: Callable[[Any], Any] | None = None) -> tuple[dict[str, Any], int, dict[str, str]]:
        """The list response of a view: the envelope (each item through ``render``), 200 and its ``Link``."""
        body = self.body()
        if render is not None:
            body["items"] = [render(item) for item in self.items]
        return body, 200, self.headers()


def answers(
    blp: Any,
    status: int,
    schema: Any = None,
    *,
    description: str | None = None,
    forbidden: str | None = None,
    not_found: str | None = None,
    conflict: str | None = None,
    stale: str | bool = False,
    unavailable: str | None = None,
    more: Mapping[int, str] | None = None,
) -> Callable[[V], V]:
    """flask-smorest's ``@blp.response(status, schema, description=description)`` together with the
    other answers the operation documents: 403 ``forbidden``, 404 ``not_found``, 409 ``conflict``,
    412 ``stale`` (``True``: an ``If-Match`` naming an older version, :data:`STALE_VERSION`), 503
    ``unavailable`` and ``more`` (status → description), each with its description."""
    others = {
        403: forbidden,
        404: not_found,
        409: conflict,
        412: STALE_VERSION if stale is True else stale or None,
        503: unavailable,
        **(more or {}),
    }
    decorators = [blp.response(status, schema, description=description)]
    decorators += [blp.alt_response(code, description=text) for code, text in others.items() if text]

    def decorate(view: V) -> V:
        for decorator in reversed(decorators):
            view = decorator(view)
        return view

    return decorate


def paginate(session: Session, statement: Select[Any], page: int, per_page: int) -> Page:
    total = session.scalar(select(func.count()).select_from(statement.order_by(None).subquery()))
    items = session.scalars(statement.limit(per_page).offset((page - 1) * per_page)).all()
    return Page(items=list(items), page=page, per_page=per_page, total=total or 0)


def etag_headers(item: Any, *, version_attr: str | None = None, **extra: str) -> dict[str, str]:
    """Response headers of a single resource: its ``ETag`` (of ``version_attr``, by default the model's
    version column, see ``db.version_of``), plus ``extra`` (``Location=…``)."""
    version = version_of(item) if version_attr is None else getattr(item, version_attr)
    return {"ETag": etag_of(item.id, version), **extra}


def check_if_match(resource_id: object, version: int) -> None:
    """412 when the caller's ``If-Match`` names another version; no header means last write wins.

    For reads outside a command; a command checks ``ctx.check_version`` (the same rule)."""
    ensure_version(request.headers.get("If-Match"), resource_id, version)


IF_MATCH_DOC = {
    "in": "header",
    "name": "If-Match",
    "required": False,
    "schema": {"type": "string", "maxLength": 200},
    "description": "The `ETag` you read: the change is refused with 412 if the resource changed since. "
    "Without it the last write wins.",
}


class PreconditionPlugin(BasePlugin):
    """Documents ``If-Match`` on every operation that documents a 412, the answer only ``If-Match`` causes.

    Declared once, derived everywhere: a view that calls :func:`check_if_match` states its 412 with
    ``@blp.alt_response(412, ...)``, and the header parameter follows from it (public apispec hook).
    """

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        for operation in (operations or {}).values():
            if not isinstance(operation, dict) or not {"412", 412} & set(operation.get("responses", {})):
                continue
            parameters = operation.setdefault("parameters", [])
            if not any(
                isinstance(p, dict) and p.get("in") == "header" and p.get("name") == "If-Match" for p in parameters
            ):
                parameters.append(deepcopy(IF_MATCH_DOC))
