"""What a decorator adds to an operation's OpenAPI entry, declared on the view and merged by an apispec plugin.

flask-smorest documents what its own decorators know (arguments, responses, ``@blp.doc``). Vigil's
decorators that are not tied to one blueprint (``@requires``, ``@idempotent``, a service's
``@if_match``) say what they add with :func:`document`: it records extension fields
(``x-vigil-permission``) and header parameters in an attribute of the view function, which
``functools.wraps`` carries up through every decorator above it. :class:`OperationDocPlugin`, an
apispec plugin (public ``operation_helper`` hook, registered through flask-smorest's public
``extra_plugins`` spec option), finds the view behind each documented operation and merges the
record in once the operation is otherwise complete. So the result does not depend on the order
of the decorators, and nothing reads or writes flask-smorest's private ``_apidoc``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, TypeVar

from apispec import APISpec, BasePlugin
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Flask
from flask_smorest import Blueprint
from flask_smorest.spec.plugins import FlaskPlugin
from marshmallow import Schema
from webargs.flaskparser import FlaskParser

ATTRIBUTE = "__vigil_openapi__"
JSON_BODIES = "vigil_json_body_operations"  # app extension: {(endpoint, METHOD)} whose JSON body is required

View = TypeVar("View", bound=Callable[..., Any])


class SchemaReusingParser(FlaskParser):
    """flask-smorest's parser, reusing one instance of each argument schema class.

    webargs builds a new instance of a schema class for every request it parses (``_get_schema``):
    for the customer record's body schema (about 90 fields, each deep-copied) that was a tenth of a
    create's CPU. A marshmallow 4 schema keeps no state between loads (flask-smorest already
    shares one response schema instance between all requests), so the first instance is kept.
    It is made at the first request, after the request guards have adjusted the classes
    (``guards.bound_integers``). Anything other than a schema class is resolved as webargs does.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._instances: dict[type[Schema], Schema] = {}

    def _get_schema(self, argmap: Any, req: Any) -> Schema:
        if isinstance(argmap, type) and issubclass(argmap, Schema):
            schema = self._instances.get(argmap)
            if schema is None:
                schema = self._instances.setdefault(argmap, argmap())
            return schema
        return super()._get_schema(argmap, req)


# Every blueprint parses with it: the parser is bound when a view is decorated, and every module
# declaring views imports this one (through ``vigil_shared.web`` or ``authz``) before its decorators run.
Blueprint.ARGUMENTS_PARSER = SchemaReusingParser()


@dataclass(frozen=True)
class OperationDoc:
    """Extension fields and header/query parameters one or more decorators add to an operation."""

    fields: Mapping[str, Any] = field(default_factory=dict)
    parameters: tuple[Mapping[str, Any], ...] = ()

    def merged(self, other: OperationDoc) -> OperationDoc:
        """Both records; a parameter named twice (same ``in`` and ``name``) is kept once."""
        parameters = {(p["in"], p["name"]): p for p in (*self.parameters, *other.parameters)}
        return OperationDoc({**self.fields, **other.fields}, tuple(parameters[key] for key in sorted(parameters)))


def operation_doc(view: Callable[..., Any]) -> OperationDoc:
    """What has been declared with :func:`document` on ``view`` or any view it wraps."""
    return getattr(view, ATTRIBUTE, None) or OperationDoc()


def document(
    view: View, *, fields: Mapping[str, Any] | None = None, parameters: tuple[Mapping[str, Any], ...] = ()
) -> View:
    """Declares on ``view`` (a function, usually a decorator's wrapper) what it adds to its operation.

    Records are merged, never mutated in place: the view a wrapper wraps keeps its own.
    """
    setattr(view, ATTRIBUTE, operation_doc(view).merged(OperationDoc(dict(fields or {}), tuple(parameters))))
    return view


def _requires_json_body(operation: Mapping[str, Any]) -> bool:
    body = operation.get("requestBody")
    if not isinstance(body, Mapping) or not body.get("required", False):
        return False
    return any(kind == "application/json" or kind.endswith("+json") for kind in body.get("content", {}))


def declares_json_body(app: Flask, endpoint: str | None, method: str) -> bool:
    """Whether the operation documents a required JSON body (as :class:`OperationDocPlugin` saw it)."""
    return (endpoint, method.upper()) in app.extensions.get(JSON_BODIES, frozenset())


class OperationDocPlugin(BasePlugin):
    """Merges each view's :class:`OperationDoc` into its operation (flask-smorest passes the ``rule``).

    It also notes, per app, which operations require a JSON body (``requestBody`` with ``required``
    and a JSON media type, as flask-smorest's ``arguments`` documents it), for the request guard
    that answers 400 to such an operation called without a body (:func:`declares_json_body`). What
    the guard reads is thus the finished OpenAPI operation, whatever the order of the decorators
    that built it.
    """

    def __init__(self) -> None:
        self.app: Flask | None = None

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if self.app is None or rule is None or not operations:
            return
        view = self.app.view_functions.get(rule.endpoint)
        json_bodies: set[tuple[str, str]] = self.app.extensions.setdefault(JSON_BODIES, set())
        for method, operation in operations.items():
            if _requires_json_body(operation):
                json_bodies.add((rule.endpoint, method.upper()))
            handler = getattr(getattr(view, "view_class", None), method, None) or view
            doc = operation_doc(handler) if handler is not None else OperationDoc()
            operation.update(deepcopy(dict(doc.fields)))
            if doc.parameters:
                present = {(p.get("in"), p.get("name")) for p in operation.get("parameters", []) if isinstance(p, dict)}
                operation["parameters"] = [
                    *operation.get("parameters", []),
                    *(deepcopy(dict(p)) for p in doc.parameters if (p["in"], p["name"]) not in present),
                ]


class InternalBlueprint(Blueprint):  # type: ignore[misc]  # flask-smorest ships no type information
    """A blueprint whose operations stay out of the served OpenAPI document (service-to-service only).

    They are still described, in a scratch document nobody serves, so what is read off a finished
    operation (:func:`declares_json_body`) holds for them as for every other.
    """

    def register_views_in_doc(self, api: Any, app: Flask, spec: APISpec, *, name: str, parameters: Any) -> None:
        recorder = OperationDocPlugin()
        recorder.app = app
        scratch = APISpec(
            title="internal",
            version="internal",
            openapi_version=str(spec.openapi_version),
            plugins=[FlaskPlugin(), MarshmallowPlugin(), recorder],
        )
        super().register_views_in_doc(api, app, scratch, name=name, parameters=parameters)
