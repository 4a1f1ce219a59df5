"""Input rules every route gets without asking: checked once, before any view, parser or query runs.

A new route is safe without thinking about it because nothing here is per-view:

- **ids**: ``<int:…>`` in every URL rule is bounded to the columns' range (``INT32_MAX``); an id
  outside it matches no route, so it answers 404 like any id that names nothing. Every Integer
  field of every argument schema (body, query) is bounded the same way unless it declares
  ``metadata={"format": "int64"}``, so an oversized id in a body or filter answers 422 instead of
  overflowing the database column.
- **text**: NUL, other C0 control characters (tab, newline and carriage return are allowed), DEL and
  lone surrogates in a JSON body (keys and values), a query parameter, a form field or a header
  answer 422; in the path, 404. PostgreSQL refuses NUL and lone surrogates cannot be encoded, so
  without this each would be a 500 somewhere. (gunicorn already refuses control characters in
  headers as malformed HTTP, a problem+json 400 from ``gunicorn_worker``; the header check here
  covers servers that let them through.)
- **structure**: JSON nested deeper than ``MAX_JSON_DEPTH`` answers 400, judged on the raw bytes
  before any parser recurses into them.
- **size**: a body sent with ``Transfer-Encoding: chunked`` is read up to the limit; over it, 413,
  exactly as with ``Content-Length`` (werkzeug would otherwise silently stop at the limit and hand
  the view a truncated body).
- **required bodies**: an operation that declares a JSON body (flask-smorest ``arguments`` with
  ``required=True``, read from its finished OpenAPI operation by :mod:`vigil_shared.apidoc`) called
  without any body answers 400 instead of acting on nothing.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterable, Iterator
from typing import IO, Any
from urllib.parse import unquote_plus

from flask import Flask, current_app, request
from marshmallow import Schema, class_registry, fields, validate
from werkzeug.routing import IntegerConverter, Map

from .apidoc import declares_json_body
from .errors import DRAIN_LIMIT, Problem, not_found, validation_problem

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_JSON_DEPTH = 32

# C0 controls but tab, newline and carriage return; DEL; UTF-16 surrogates (only ever unpaired in a str).
_BAD_TEXT = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")
_BAD_HEADER = re.compile("[\x00-\x08\x0a-\x1f\x7f]")  # a header value may hold a tab, never a line break
_BAD_PATH = re.compile("[\x00-\x1f\x7f\ud800-\udfff]")
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)
_JSON_BRACKET = re.compile(rb"[\[\]{}]")
TEXT_ERROR = "Must not contain NUL or other control characters (tab and line breaks are allowed)."


# --- ids in URLs ---------------------------------------------------------------------------------


class BoundedIntConverter(IntegerConverter):
    """``<int:id>`` limited to the 32-bit columns ids live in; ``<int(max=…):x>`` still overrides."""

    def __init__(
        self, map: Map, fixed_digits: int = 0, min: int | None = None, max: int | None = INT32_MAX, signed: bool = False
    ) -> None:
        super().__init__(map, fixed_digits=fixed_digits, min=min, max=max, signed=signed)


# --- integers in argument schemas ----------------------------------------------------------------


def _bounds_of(field: fields.Integer) -> tuple[int, int]:
    return (INT64_MIN, INT64_MAX) if field.metadata.get("format") == "int64" else (INT32_MIN, INT32_MAX)


def _nested_schema(field: fields.Nested) -> Any:
    nested = field.nested
    if isinstance(nested, str):
        if nested == "self":
            return None  # its parent is being walked already
        try:
            return class_registry.get_class(nested)
        except Exception:  # noqa: BLE001 - an unresolvable name is not ours to judge
            return None
    if callable(nested) and not isinstance(nested, type):
        return nested()
    return nested


def _walk_field(field: fields.Field[Any], seen: set[int]) -> None:
    if isinstance(field, fields.Integer):
        if not getattr(field, "_vigil_bounded", False):
            low, high = _bounds_of(field)
            field.validators.append(validate.Range(min=low, max=high, error="Must be between {min} and {max}."))
            setattr(field, "_vigil_bounded", True)  # noqa: B010 - a mark of ours on marshmallow's field
    elif isinstance(field, fields.Nested):
        schema = _nested_schema(field)
        if schema is not None:
            bound_integers(schema, seen)
    elif isinstance(field, fields.List):
        _walk_field(field.inner, seen)
    elif isinstance(field, fields.Tuple):
        for inner in field.tuple_fields:
            _walk_field(inner, seen)
    elif isinstance(field, fields.Mapping):
        for mapped in (field.key_field, field.value_field):
            if mapped is not None:
                _walk_field(mapped, seen)


def bound_integers(schema: type[Schema] | Schema, seen: set[int] | None = None) -> None:
    """Gives every Integer field of ``schema`` (and of the schemas it nests) the column range.

    Schema classes are changed in place, so every instance webargs makes per request has the bound,
    and apispec documents it as ``minimum``/``maximum``.
    """
    seen = set() if seen is None else seen
    if id(schema) in seen:
        return
    seen.add(id(schema))
    if isinstance(schema, type) and issubclass(schema, Schema):
        declared = schema._declared_fields
    elif isinstance(schema, Schema):
        declared = {**schema.declared_fields, **schema.fields}
    else:
        return
    for field in declared.values():
        _walk_field(field, seen)


def argument_schemas(blueprint: Any) -> Iterator[Any]:
    """The schemas a flask-smorest blueprint parses requests with (body, query, path, form…)."""
    for endpoint_doc in getattr(blueprint, "_docs", {}).values():
        for method, doc in endpoint_doc.items():
            if method == "parameters" or not isinstance(doc, dict):
                continue
            for parameter in doc.get("arguments", {}).get("parameters", []):
                schema = parameter.get("schema") if isinstance(parameter, dict) else None
                if schema is not None:
                    yield schema


# --- text --------------------------------------------------------------------------------------


def _bad_strings(value: Any, path: str = "") -> Iterator[str]:
    """Dotted paths of the JSON strings (keys included) holding a character no text field may hold."""
    stack = [(value, path)]
    while stack:
        item, where = stack.pop()
        if isinstance(item, str):
            if _BAD_TEXT.search(item):
                yield where or "_body"
        elif isinstance(item, dict):
            for key, inner in item.items():
                name = f"{where}.{key}" if where else str(key)
                if _BAD_TEXT.search(key):
                    yield where or "_body"
                    continue
                stack.append((inner, name))
        elif isinstance(item, list):
            stack.extend((inner, f"{where}.{index}" if where else str(index)) for index, inner in enumerate(item))


def check_text(
    items: Iterable[tuple[str, Any]], errors: dict[str, list[str]], bad: re.Pattern[str] = _BAD_TEXT
) -> None:
    for name, value in items:
        if bad.search(name) or (isinstance(value, str) and bad.search(value)):
            errors.setdefault(_printable(name), []).append(TEXT_ERROR)


def _printable(name: str) -> str:
    return _BAD_TEXT.sub("?", name)[:100]


# --- structure ---------------------------------------------------------------------------------


def json_too_deep(data: bytes, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether the JSON text opens more than ``limit`` arrays/objects inside each other.

    Judged on bytes (strings removed first, brackets in them do not count), in C-speed regex passes,
    so a 100,000-deep document is refused before any recursive parser sees it.
    """
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    depth = 0
    for match in _JSON_BRACKET.finditer(_JSON_STRING.sub(b'""', data)):
        if match.group() in (b"[", b"{"):
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


# --- size --------------------------------------------------------------------------------------


def buffer_streamed_body(max_bytes: int) -> None:
    """Reads a chunked body whole (up to ``max_bytes``) so it is judged like one with Content-Length.

    Over the limit: 413 (after draining a bounded amount so the client reads the answer). Within
    it: the body is put back as a sized stream, so every later reader (views, the gateway's
    forwarding) sees all of it and nothing ever sees a silently truncated one.
    """
    environ = request.environ
    if "chunked" not in environ.get("HTTP_TRANSFER_ENCODING", "").lower():
        return  # Content-Length framing: werkzeug refuses it over the limit before reading
    stream = environ["wsgi.input"]
    chunks, size = [], 0
    while True:
        chunk = stream.read(min(65536, max_bytes + 1 - size))
        if not chunk:
            break
        chunks.append(chunk)
        size += len(chunk)
        if size > max_bytes:
            _drain(stream, DRAIN_LIMIT)
            environ["wsgi.input"] = io.BytesIO(b"")
            environ.pop("HTTP_TRANSFER_ENCODING", None)
            environ["CONTENT_LENGTH"] = "0"
            raise Problem(413, f"The request body is over the limit of {max_bytes} bytes.")
    data = b"".join(chunks)
    environ["wsgi.input"] = io.BytesIO(data)
    environ["CONTENT_LENGTH"] = str(len(data))
    environ.pop("HTTP_TRANSFER_ENCODING", None)


def _drain(stream: IO[bytes], limit: int) -> None:
    read = 0
    try:
        while read < limit:
            chunk = stream.read(65536)
            if not chunk:
                return
            read += len(chunk)
    except (OSError, ValueError):
        pass


# --- required bodies ---------------------------------------------------------------------------


# --- the hook ------------------------------------------------------------------------------------

BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def check_request(forms: bool = False) -> None:
    """Every rule above, for the current request; raises the problem to answer."""
    app = current_app
    if request.method not in BODY_METHODS and passes_without_body(request.environ, request.path):
        return  # the same rules on the WSGI environ, without werkzeug's header view and query parsing
    if _BAD_PATH.search(request.path):
        raise not_found("resource")
    errors: dict[str, list[str]] = {}
    check_text(request.headers.items(), errors, _BAD_HEADER)
    check_text(request.args.items(multi=True), errors)
    if errors:
        raise validation_problem(errors, "The request holds control characters.")
    if request.method in BODY_METHODS:
        buffer_streamed_body(app.config["MAX_CONTENT_LENGTH"])
        if not request.content_length and declares_json_body(app, request.endpoint, request.method):
            raise Problem(400, "This operation needs a JSON request body.", errors={"_body": ["Missing."]})
        if request.content_length and request.is_json:
            data = request.get_data(cache=True)
            if json_too_deep(data):
                raise Problem(
                    400,
                    f"The JSON body is nested deeper than {MAX_JSON_DEPTH} levels.",
                    errors={"_body": [f"Nested deeper than {MAX_JSON_DEPTH} levels."]},
                )
            body = request.get_json(silent=True)  # malformed JSON is the parser's 400, later
            for path in _bad_strings(body):
                errors.setdefault(_printable(path), []).append(TEXT_ERROR)
        elif forms and request.mimetype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            check_text(request.form.items(multi=True), errors)
            check_text(((name, upload.filename) for name, upload in request.files.items(multi=True)), errors)
        if errors:
            raise validation_problem(errors, "The request holds control characters.")


def passes_without_body(environ: dict[str, Any], path: str) -> bool:
    """Whether :func:`check_request` lets this request through, for a request that sends no body (a GET
    or HEAD without ``Content-Length`` or ``Transfer-Encoding``), judged on the WSGI environ alone.

    For a WSGI fast path below Flask (the gateway's forwarded reads): False means "let the full request
    layer judge it", never a different answer. The same rules, on the same text: the path (``path`` as
    werkzeug decodes it, ``request.path``); every header value and name (werkzeug's names are the
    environ's keys re-cased, which neither adds nor removes a character); the query string decoded as a
    whole (``%XX`` escapes never span a ``&`` or ``=``, so the parts hold exactly the characters of the
    whole; an undecodable byte stays an escape in werkzeug's parts and becomes U+FFFD here, neither a
    control character nor a surrogate).
    """
    if _BAD_PATH.search(path):
        return False
    names = [key for key in environ if key[:5] == "HTTP_" or key in _HEADER_KEYS]
    # names and values, each judged as before: the space between them is no character the rule refuses
    text = " ".join([*names, *[value for key in names if isinstance(value := environ[key], str)]])
    if not (text.isascii() and text.isprintable()) and _BAD_HEADER.search(text):  # printable ASCII: no control
        return False
    query = environ.get("QUERY_STRING", "")
    # a non-ASCII query is left to werkzeug, which decodes it as UTF-8 strictly
    return not query or (query.isascii() and not _BAD_TEXT.search(unquote_plus(query) if "%" in query else query))


_HEADER_KEYS = frozenset({"CONTENT_TYPE", "CONTENT_LENGTH"})


def install(app: Flask, *, forms: bool = False) -> None:
    """Registers the URL id bound and the request check (first of the app's before_request hooks)."""
    app.url_map.converters["int"] = BoundedIntConverter

    def _guard() -> None:
        check_request(forms=app.extensions.get("vigil_check_forms", forms))

    app.before_request(_guard)
