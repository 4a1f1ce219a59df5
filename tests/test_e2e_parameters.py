"""Every query parameter and header an operation reads is documented on it in the merged OpenAPI.

What an operation reads is found from the code itself, for the gateway and every service:
- the query/header schemas flask-smorest parses for it (``@blp.arguments(..., location="query")``),
  taken from every decorator layer of the view, so a decorator that loses them from the document
  (as ``@idempotent`` once did with ``allow_duplicates``) is caught;
- every literal ``request.args.get("x")`` / ``request.headers.get("X")`` / ``request.headers["X"]``
  (the key may be a module constant) in the view, its decorators and every Vigil function it calls,
  followed through the call graph by static reading of their source.
App-wide hooks (request id, authentication, body checks) are not reachable from a view and are
documented once, in the security schemes and docs/api.md.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import textwrap
import types

import pytest

from vigil_shared.config import SERVICES

LOCATIONS = {"query": "query", "querystring": "query", "headers": "header", "cookies": "cookie"}
REQUEST_SOURCES = {"args": "query", "headers": "header", "cookies": "cookie"}
SKIPPED_ENDPOINTS = {"proxy", "static", "healthz", "readyz", "openapi_document"}
IGNORED_HEADERS = {"user-agent"}  # request metadata every client sends; recorded, never a parameter
# Undocumented reads tolerated for now (none): the test fails on any read not listed here and on any
# listed one that is now documented, so this list only shrinks.
KNOWN_GAPS: set[tuple[str, str, str, str]] = set()


def _build_apps(tmp_path_factory) -> dict[str, object]:
    from vigil_gateway.app import create_app as gateway_app
    from vigil_gateway.settings import GatewaySettings
    from vigil_shared.config import Settings
    from vigil_shared.crypto import generate_key
    from vigil_shared.testing import TEST_SECRET

    folder = tmp_path_factory.mktemp("apps")
    apps = {}
    for name in SERVICES:
        program = importlib.import_module(f"vigil_{name}.app").program
        settings = Settings.from_env(
            name,
            database_url=f"sqlite:///{folder}/{name}.db",
            internal_secret=TEST_SECRET,
            broker_url="memory://",
            log_level="WARNING",
            encryption_keys=(generate_key(),),
            blind_index_key="parameters-test",
        )
        apps[name] = program.create_app(settings)
    base = Settings.from_env(
        "gateway",
        database_url=f"sqlite:///{folder}/gateway.db",
        internal_secret=TEST_SECRET,
        broker_url="memory://",
        log_level="WARNING",
    )
    apps["gateway"] = gateway_app(GatewaySettings.from_env(base=base, secret_key="p" * 40))
    return apps


def _layers(func):
    """The function and each one it wraps. ``type()`` rather than ``isinstance``: the namespaces hold
    Flask's context proxies (``request``, ``g``), which raise outside a request when inspected."""
    while type(func) in (types.FunctionType, types.MethodType):
        yield func
        func = getattr(func, "__wrapped__", None)


def _schema_reads(view) -> set[tuple[str, str]]:
    reads = set()
    for layer in _layers(view):
        for parameter in getattr(layer, "_apidoc", {}).get("arguments", {}).get("parameters", []):
            where = LOCATIONS.get(parameter["in"])
            if where is None:
                continue
            schema = parameter["schema"]
            schema = schema() if isinstance(schema, type) else schema
            if not hasattr(schema, "fields"):  # a plain OpenAPI parameter (e.g. If-Match): documentation only
                continue
            for attr, field in schema.fields.items():
                if not field.dump_only:
                    reads.add((where, field.data_key or attr))
    return reads


class _CodeReads(ast.NodeVisitor):
    """Literal ``request.<args|headers>`` reads and the names a function calls."""

    def __init__(self, namespace: dict):
        self.namespace = namespace
        self.reads: set[tuple[str, str]] = set()
        self.calls: list[object] = []

    def _key(self, node) -> str | None:
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            return node.value
        if isinstance(node, ast.Name) and type(self.namespace.get(node.id)) is str:
            return self.namespace[node.id]
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = self.namespace.get(node.value.id)
            value = getattr(owner, node.attr, None) if type(owner) in (types.ModuleType, type) else None
            return value if type(value) is str else None
        return None

    @staticmethod
    def _source(node) -> str | None:
        """``request.args`` → "query", ``request.headers`` → "header"."""
        if (
            isinstance(node, ast.Attribute)
            and node.attr in REQUEST_SOURCES
            and isinstance(node.value, ast.Name)
            and node.value.id == "request"
        ):
            return REQUEST_SOURCES[node.attr]
        return None

    def visit_Call(self, node):
        func = node.func
        if isinstance(func, ast.Attribute) and func.attr in ("get", "getlist", "__getitem__") and node.args:
            where = self._source(func.value)
            key = self._key(node.args[0])
            if where and key:
                self.reads.add((where, key))
        target = self._resolve(func)
        if target is not None:
            self.calls.append(target)
        for arg in node.args:  # functions passed along (callbacks) count as called
            resolved = self._resolve(arg)
            if resolved is not None:
                self.calls.append(resolved)
        self.generic_visit(node)

    def visit_Subscript(self, node):
        where = self._source(node.value)
        key = self._key(node.slice)
        if where and key:
            self.reads.add((where, key))
        self.generic_visit(node)

    def visit_Compare(self, node):  # `"X" in request.headers` is a read too
        for op, right in zip(node.ops, node.comparators, strict=False):
            where = self._source(right)
            key = self._key(node.left)
            if isinstance(op, ast.In) and where and key:
                self.reads.add((where, key))
        self.generic_visit(node)

    def _resolve(self, node):
        if isinstance(node, ast.Name):
            return self.namespace.get(node.id)
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            owner = self.namespace.get(node.value.id)
            if type(owner) is types.ModuleType:
                return getattr(owner, node.attr, None)
        return None


def _is_vigil(obj) -> bool:
    return (getattr(obj, "__module__", "") or "").startswith("vigil_")


def _code_reads(view, seen: set) -> set[tuple[str, str]]:
    reads = set()
    pending = list(_layers(view))
    while pending:
        func = pending.pop()
        func = func.__func__ if type(func) is types.MethodType else func
        if type(func) is not types.FunctionType or func.__code__ in seen or not _is_vigil(func):
            continue
        seen.add(func.__code__)
        try:
            # the code object's own source: getsource(func) would follow __wrapped__ past a decorator
            tree = ast.parse(textwrap.dedent(inspect.getsource(func.__code__)))
        except (OSError, TypeError, SyntaxError):
            continue
        namespace = dict(func.__globals__)
        if func.__closure__:
            namespace.update(
                {
                    name: cell.cell_contents
                    for name, cell in zip(func.__code__.co_freevars, func.__closure__, strict=False)
                    if _cell_filled(cell)
                }
            )
        visitor = _CodeReads(namespace)
        visitor.visit(tree)
        reads |= visitor.reads
        for target in visitor.calls:
            if issubclass(type(target), type) and _is_vigil(target):
                pending.extend(v for v in vars(target).values() if isinstance(v, types.FunctionType))
            else:
                pending.extend(_layers(target))
    return reads


def _cell_filled(cell) -> bool:
    try:
        cell.cell_contents  # noqa: B018 - an empty cell raises
    except ValueError:
        return False
    return True


def _documented(doc: dict, path: str, method: str) -> set[tuple[str, str]]:
    item = doc["paths"].get(path, {})
    params = [*item.get("parameters", []), *item.get(method, {}).get("parameters", [])]
    found = set()
    for param in params:
        if "$ref" in param:
            param = doc["components"]["parameters"][param["$ref"].rsplit("/", 1)[1]]
        found.add((param["in"], param["name"].lower() if param["in"] == "header" else param["name"]))
    return found


def _operations(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in SKIPPED_ENDPOINTS or rule.endpoint.startswith("docs."):
            continue
        view = app.view_functions[rule.endpoint]
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        view_class = getattr(view, "view_class", None)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            handler = getattr(view_class, method.lower(), None) if view_class else view
            if handler is not None:
                yield path, method.lower(), handler


@pytest.fixture(scope="module")
def merged_document(anonymous):
    response = anonymous.get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.json()
    assert "x-vigil-unavailable-services" not in doc
    return doc


def test_every_read_parameter_is_documented(merged_document, tmp_path_factory):
    apps = _build_apps(tmp_path_factory)
    missing, checked = set(), 0
    for owner, app in apps.items():
        for path, method, handler in _operations(app):
            if path not in merged_document["paths"] or method not in merged_document["paths"][path]:
                continue  # an operation left out of the document is another test's business
            checked += 1
            documented = _documented(merged_document, path, method)
            for where, name in _schema_reads(handler) | _code_reads(handler, set()):
                if where == "header" and name.lower() in IGNORED_HEADERS:
                    continue
                key = (where, name.lower() if where == "header" else name)
                if key not in documented:
                    missing.add((owner, f"{method.upper()} {path}", where, name))
    assert checked > 100, f"only {checked} operations inspected"
    new = sorted(missing - KNOWN_GAPS)
    fixed = sorted(KNOWN_GAPS - missing)
    assert not new and not fixed, (
        "operations read parameters their OpenAPI entry does not document:\n"
        + "\n".join(map(str, new))
        + "\n\ndocumented now, remove from KNOWN_GAPS:\n"
        + "\n".join(map(str, fixed))
    )


def test_the_scan_finds_reads_through_decorators_and_calls():
    """The scanner itself: a header read two calls deep, behind a decorator, is found."""
    from vigil_shared.http import check_if_match
    from vigil_shared.idempotency import idempotent

    reads = _code_reads(idempotent(check_if_match), set())
    assert {("header", "If-Match"), ("header", "Idempotency-Key")} <= reads
