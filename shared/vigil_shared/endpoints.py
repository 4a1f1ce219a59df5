"""One declaration per operation: permission, record rule, idempotency, arguments and answers.

Every view of the services and the gateway stacks the same decorators, in the same order
(docs/architecture.md, "Where rights are checked"):

    @requires(permission)        refuses a caller who holds it nowhere, before any parsing
    @rule(permission)            loads the URL's record, checks the right at its location (404 outside)
    @idempotent                  a POST honouring Idempotency-Key (a replay skips parsing)
    @blp.arguments(query, location="query", as_kwargs=True)
    @blp.arguments(body)
    @answers(blp, status, schema, conflict=…, stale=…)   the success answer, then the others

:func:`endpoint` is that stack written once, and the verbs of this module's :class:`Blueprint` are
:func:`endpoint` with what the conventions imply (an idempotent ``POST``, 201 on a create, ``If-Match``
on a change)::

    blp = Blueprint("invoices", __name__, url_prefix="/api/v1", description="Invoices")

    @blp.route("/invoices/<int:invoice_id>/void")
    class InvoiceVoid(MethodView):
        @blp.transition("billing.manage", InvoiceSchema, rule=invoice_rule, optional_body=VoidSchema, conflict=…)
        def post(self, data, invoice_id):
            ...

It applies exactly those decorators (flask-smorest's public ``arguments``/``response``/``alt_response``,
Vigil's ``requires``, the rule and ``idempotent``), once, when the module is imported: the view a
request reaches is the same chain of wrappers a hand-written stack gives, so the OpenAPI document, the
order of the checks and the cost of a request do not change. Decorators it does not cover (an upload's
``location="files"``, an extra answer with its own schema) go right under it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from flask.views import MethodView
from flask_smorest import Blueprint as SmorestBlueprint
from marshmallow import Schema, fields

from .archived import ArchiveItemsArgs
from .authz import requires
from .http import answers as documented_answers
from .idempotency import idempotent as idempotent_view

V = TypeVar("V", bound=Callable[..., Any])
Decorator = Callable[[Any], Any]
Rule = Callable[[str], Decorator]
"""A record rule factory: called with the operation's permission (``customer_rule``, ``invoice_rule``)."""


NAMED_ANSWERS = frozenset({"forbidden", "not_found", "conflict", "stale", "unavailable"})
OPTIONS = NAMED_ANSWERS | {
    *("status", "rule", "record", "idempotent", "query", "query_kwargs", "body", "optional_body"),
    *("description", "answers"),
}


def endpoint(blp: Any, permission: str, schema: Any = None, **options: Any) -> Callable[[V], V]:
    """The decorators of one operation, outermost first, as the module docstring lists them.

    ``permission`` goes to ``@requires`` and to ``rule``, a record rule factory (:data:`Rule`;
    ``record``: a rule built otherwise, one that checks another right than ``permission``);
    ``idempotent=True`` adds ``@idempotent``; ``query`` is parsed from the query string (as keyword
    arguments, or one dict with ``query_kwargs=False``), ``body`` from the JSON body (``optional_body``:
    a body that may be absent). ``schema`` and ``description`` are the success answer's (``status``:
    200 unless said); ``forbidden``, ``not_found``, ``conflict``, ``stale`` and ``unavailable`` are the
    answers :func:`vigil_shared.http.answers` documents, and ``answers`` maps any status to its
    description (a status without a keyword here, or answers several views share). An unknown option
    is refused when the module is imported.
    """
    unknown = sorted(set(options) - OPTIONS)
    if unknown:
        raise TypeError(f"endpoint() got unknown options {unknown}")
    decorators: list[Decorator] = [requires(permission)]
    if options.get("rule") is not None:
        decorators.append(options["rule"](permission))
    if options.get("record") is not None:
        decorators.append(options["record"])
    if options.get("idempotent"):
        decorators.append(idempotent_view)
    if options.get("query") is not None:
        decorators.append(
            blp.arguments(options["query"], location="query", as_kwargs=options.get("query_kwargs", True))
        )
    if options.get("body") is not None:
        decorators.append(blp.arguments(options["body"]))
    if options.get("optional_body") is not None:
        decorators.append(blp.arguments(options["optional_body"], required=False))
    named = {name: options[name] for name in NAMED_ANSWERS if name in options}
    status, description = options.get("status", 200), options.get("description")
    decorators.append(
        documented_answers(blp, status, schema, description=description, more=options.get("answers"), **named)
    )

    def decorate(view: V) -> V:
        for decorator in reversed(decorators):
            view = decorator(view)
        return view

    return decorate


def _verb(**implied: Any) -> Callable[..., Decorator]:
    """A :class:`Blueprint` method: :func:`endpoint` on the blueprint with ``implied`` options (the caller's win)."""

    def verb(blp: Any, permission: str, schema: Any = None, **options: Any) -> Decorator:
        return endpoint(blp, permission, schema, **{**implied, **options})

    return verb


class Blueprint(SmorestBlueprint):  # type: ignore[misc]  # flask-smorest ships no type information
    """flask-smorest's blueprint whose views declare each operation once, by what it does.

    Each verb is :func:`endpoint` on this blueprint with what the conventions every service follows
    (/work/shared/CONVENTIONS.md) imply, so a view says only what is its own:

    - ``@blp.read(permission, schema, …)``: a ``GET`` answering 200;
    - ``@blp.create(permission, schema, …)``: a ``POST`` that makes a record: ``@idempotent``, 201;
    - ``@blp.start(permission, schema, …)``: a ``POST`` that starts work left to a worker: ``@idempotent``,
      202 (its answer names the operation to follow);
    - ``@blp.action(permission, schema, …)``: any other ``POST``: ``@idempotent``, 200;
    - ``@blp.transition(permission, schema, …)``: a ``POST`` that moves one record on (issue, void,
      cancel, deactivate…): ``@idempotent``, honours ``If-Match`` (412);
    - ``@blp.change(permission, schema, …)``: a ``PATCH`` or ``PUT``: honours ``If-Match`` (412);
    - ``@blp.remove(permission, …)``: a ``DELETE``: 204, honours ``If-Match`` (412);
    - ``@blp.operation(permission, schema, …)``: anything else, every option said (a ``POST`` that
      takes no ``Idempotency-Key``, say).

    Every keyword of :func:`endpoint` is accepted and overrides what the verb implies
    (``stale="…"``: the 412's own wording).
    """

    operation = read = _verb()
    create = _verb(status=201, idempotent=True)
    start = _verb(status=202, idempotent=True)
    action = _verb(idempotent=True)
    transition = _verb(idempotent=True, stale=True)
    change = _verb(stale=True)
    remove = _verb(status=204, stale=True)


def archive_items_blueprint(
    import_name: str, service: str, view: str, item_schema: type[Schema], items: Callable[[list[int]], Any]
) -> Blueprint:
    """A participant's part of the archive preview (docs/archive.md), the same in every service that has one.

    ``GET /api/v1/archive-items/<service>?customer_id=…`` (``customers.archive``) answers
    ``{"items": items(the sorted customer ids)}``, each item as ``item_schema`` shows it; ``view`` names
    the view (endpoint ``archive_items.<view>``) and its answer's schema (``<view>Schema``); the
    view's docstring is ``items``'s.
    """
    blp = Blueprint(
        "archive_items",
        import_name,
        url_prefix=f"/api/v1/archive-items/{service}",
        description="What archiving customers would cancel",
    )
    answer = type(f"{view}Schema", (Schema,), {"items": fields.List(fields.Nested(item_schema))})

    def get(self: MethodView, args: dict[str, Any]) -> dict[str, Any]:
        return {"items": items(sorted(set(args["customer_id"])))}

    get.__doc__ = items.__doc__
    method = blp.read("customers.archive", answer, query=ArchiveItemsArgs, query_kwargs=False)(get)
    blp.route("")(type(view, (MethodView,), {"__module__": import_name, "get": method}))
    return blp
