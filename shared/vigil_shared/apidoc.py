"""What a decorator adds to an operation's OpenAPI entry, declared on the view and merged by an apispec plugin.

flask-smorest documents what its own decorators know (arguments, responses, ``@blp.doc``). Vigil's
decorators that are not tied to one blueprint (``@requires``, ``@idempotent``, a service's
``@if_match``) say what they add with :func:`document`: it records extension fields
(``x-vigil-permission``) and header parameters in an attribute of the view function, which
``functools.wraps`` carries up through every decorator above it. :class:`OperationDocPlugin`, an
apispec plugin (public ``operation_helper`` hook, registered through flask-smorest's public
``extra_plugins`` spec option), finds the view behind each documented operation and merges the
record in once the operation is otherwise complete. So the result does not depend on the order
of the decorators, and nothing writes into flask-smorest's private ``_apidoc``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from dataclasses import dataclass, field
from typing import Any, TypeVar

from apispec import BasePlugin
from flask import Flask

ATTRIBUTE = "__vigil_openapi__"

View = TypeVar("View", bound=Callable[..., Any])


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


class OperationDocPlugin(BasePlugin):
    """Merges each view's :class:`OperationDoc` into its operation (flask-smorest passes the ``rule``)."""

    def __init__(self) -> None:
        self.app: Flask | None = None

    def operation_helper(
        self, path: str | None = None, operations: dict[str, Any] | None = None, **kwargs: Any
    ) -> None:
        rule = kwargs.get("rule")
        if self.app is None or rule is None or not operations:
            return
        view = self.app.view_functions.get(rule.endpoint)
        for method, operation in operations.items():
            handler = getattr(getattr(view, "view_class", None), method, None) or view
            doc = operation_doc(handler) if handler is not None else OperationDoc()
            operation.update(deepcopy(dict(doc.fields)))
            if doc.parameters:
                present = {(p.get("in"), p.get("name")) for p in operation.get("parameters", []) if isinstance(p, dict)}
                operation["parameters"] = [
                    *operation.get("parameters", []),
                    *(deepcopy(dict(p)) for p in doc.parameters if (p["in"], p["name"]) not in present),
                ]
