"""RFC 9457 problem+json for every error any Vigil process answers.

Domain code raises :class:`Problem`; HTTP exceptions from Flask, webargs and werkzeug are turned
into the same shape. Nothing here ever puts a traceback, SQL or a stored value into a response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from http import HTTPStatus
from typing import Any, TypeVar

from flask import Flask, Response, g, has_request_context, request
from sqlalchemy.exc import DataError, DBAPIError, IntegrityError
from sqlalchemy.orm import Session
from sqlalchemy.orm.exc import StaleDataError
from werkzeug.exceptions import HTTPException, MethodNotAllowed

T = TypeVar("T")

PROBLEM_JSON = "application/problem+json"
log = logging.getLogger("vigil.errors")

# Problem types with a meaning of their own; everything else is "about:blank" + the status phrase.
VALIDATION = "urn:vigil:problem:validation"
CONFLICT = "urn:vigil:problem:conflict"
NOT_FOUND = "urn:vigil:problem:not-found"
UNAUTHENTICATED = "urn:vigil:problem:unauthenticated"
FORBIDDEN = "urn:vigil:problem:forbidden"
STALE = "urn:vigil:problem:stale-etag"
UNAVAILABLE = "urn:vigil:problem:service-unavailable"


class Problem(Exception):
    """An error meant for the caller: raised anywhere, answered as problem+json."""

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        *,
        title: str | None = None,
        type: str = "about:blank",
        errors: Mapping[str, list[str]] | None = None,
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ):
        super().__init__(detail or title or HTTPStatus(status).phrase)
        self.status = status
        self.detail = detail
        self.title = title or HTTPStatus(status).phrase
        self.type = type
        self.errors = dict(errors) if errors else None
        self.headers = dict(headers or {})
        self.extra = extra


def validation_problem(errors: Mapping[str, list[str]], detail: str = "The request has invalid fields.") -> Problem:
    return Problem(422, detail, title="Validation failed", type=VALIDATION, errors=errors)


def not_found(what: str = "resource") -> Problem:
    return Problem(404, f"The {what} does not exist or is not visible to you.", type=NOT_FOUND)


def get_or_404(session: Session, model: type[T], ident: Any, what: str, **owner: Any) -> T:
    """The ``model`` row ``ident``, or :func:`not_found` naming ``what``.

    ``owner`` names attributes the row must have (``customer_id=7``): a child is found only under
    its own parent, so a URL cannot reach another record's child by its id."""
    found = session.get(model, ident)
    if found is None or any(getattr(found, name) != value for name, value in owner.items()):
        raise not_found(what)
    return found


def flush_unique(session: Session, taken: Callable[[], Exception]) -> None:
    """Flushes; a unique constraint a concurrent request won between our check and our write becomes
    ``taken()`` (the same 409 the check answers), after rolling the session back."""
    try:
        session.flush()
    except IntegrityError:
        session.rollback()
        raise taken() from None


def unavailable(detail: str) -> Problem:
    """503: a dependency (another service, the broker, the payment processor) could not answer; the
    client may try again in a few seconds (``Retry-After``)."""
    return Problem(503, detail, type=UNAVAILABLE, headers={"Retry-After": "5"})


def conflict(detail: str, errors: Mapping[str, list[str]] | None = None, **extra: Any) -> Problem:
    return Problem(409, detail, type=CONFLICT, errors=errors, **extra)


def problem_body(
    status: int,
    *,
    title: str | None = None,
    detail: str | None = None,
    type: str = "about:blank",
    errors: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": type,
        "title": title or HTTPStatus(status).phrase,
        "status": status,
        "detail": detail or title or HTTPStatus(status).phrase,
    }
    if has_request_context():
        body["instance"] = request.path
        body["request_id"] = g.get("request_id")
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_response(status: int, headers: Mapping[str, str] | None = None, **kwargs: Any) -> Response:
    response = Response(json.dumps(problem_body(status, **kwargs)), status=status, mimetype=PROBLEM_JSON)
    for key, value in (headers or {}).items():
        response.headers[key] = value
    return response


def flatten_messages(messages: Any, prefix: str = "") -> dict[str, list[str]]:
    """webargs/marshmallow nest errors by location and field; callers want ``{"field": [msg]}``."""
    flat: dict[str, list[str]] = {}
    if isinstance(messages, Mapping):
        for key, value in messages.items():
            key = str(key)
            if not prefix and key in ("json", "query", "form", "files", "headers", "path", "view_args"):
                name = ""  # the location is not a field
            else:
                name = f"{prefix}.{key}" if prefix else key
            for field, msgs in flatten_messages(value, name).items():
                flat.setdefault(field, []).extend(msgs)
    elif isinstance(messages, (list, tuple)):
        if all(isinstance(m, str) for m in messages):
            flat.setdefault(prefix or "_body", []).extend(messages)
        else:
            for m in messages:
                for field, msgs in flatten_messages(m, prefix).items():
                    flat.setdefault(field, []).extend(msgs)
    elif messages is not None:
        flat.setdefault(prefix or "_body", []).append(str(messages))
    return flat


# An oversized body is refused before it is read; reading (and dropping) a bounded amount of it lets
# the client, still sending, receive the 413 instead of a connection reset.
DRAIN_LIMIT = 32 * 1024 * 1024


def _drain_unread_body() -> None:
    length = request.content_length or 0
    if not length or length > DRAIN_LIMIT:
        return
    stream = request.environ.get("wsgi.input")
    remaining = length
    try:
        while remaining > 0 and stream is not None:
            chunk = stream.read(min(65536, remaining))
            if not chunk:
                break
            remaining -= len(chunk)
    except OSError:
        pass


def http_exception_response(error: HTTPException) -> Response:
    status = error.code or 500
    if status == 413 and has_request_context():
        _drain_unread_body()
    data = getattr(error, "data", None) or {}
    messages = data.get("messages")
    headers = dict(data.get("headers") or {})
    if status in (400, 422) and messages:
        errors = flatten_messages(messages)
        if status == 400:
            return problem_response(400, headers=headers, detail="The request body is not valid JSON.", errors=errors)
        return problem_response(
            422,
            headers=headers,
            title="Validation failed",
            type=VALIDATION,
            detail="The request has invalid fields.",
            errors=errors,
        )
    if status == 401:
        headers.setdefault("WWW-Authenticate", "Bearer")
    if isinstance(error, MethodNotAllowed) and error.valid_methods:
        headers["Allow"] = ", ".join(error.valid_methods)
    detail = data.get("message") or error.description
    return problem_response(status, headers=headers, detail=detail)


# SQLSTATEs of a transaction that lost a race: serialization failure, deadlock, lock not available.
CONCURRENCY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


SQLITE_BUSY, SQLITE_LOCKED = 5, 6  # SQLite's "another connection holds the write lock" (extended codes too)


def _sqlstate(error: DBAPIError) -> str | None:
    return getattr(error.orig, "sqlstate", None) or getattr(error.orig, "pgcode", None)


def _lost_race(error: DBAPIError) -> bool:
    sqlite_code = getattr(error.orig, "sqlite_errorcode", None)
    if isinstance(sqlite_code, int) and sqlite_code & 0xFF in (SQLITE_BUSY, SQLITE_LOCKED):
        return True
    return _sqlstate(error) in CONCURRENCY_SQLSTATES


def concurrency_problem() -> Problem:
    """Another request changed the record first: 412 to a caller who sent ``If-Match``, else 409.

    Either way nothing of this request was written (its transaction is rolled back); reading the
    record again and re-applying the change is safe.
    """
    detail = "The record was changed by another request at the same time. Reload it and apply your change again."
    if has_request_context() and request.headers.get("If-Match"):
        return Problem(412, detail, type=STALE)
    return Problem(409, detail, type=CONFLICT, headers={"Retry-After": "1"})


def database_problem(error: DBAPIError) -> Problem | None:
    """The caller-facing meaning of a database refusal, or None when it is the server's fault.

    Only the class of the error is used: never its message, which would name tables, columns or SQL.
    """
    if _lost_race(error):
        return concurrency_problem()
    if isinstance(error, IntegrityError):
        return conflict(
            "The change conflicts with existing records (a duplicate, or a record it refers to "
            "changed at the same time)."
        )
    if isinstance(error, DataError):
        return validation_problem({"_body": ["A value is out of range or not valid for its field."]})
    return None


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(Problem)
    def _problem(error: Problem) -> Response:
        return problem_response(
            error.status,
            headers=error.headers,
            title=error.title,
            detail=error.detail,
            type=error.type,
            errors=error.errors,
            **error.extra,
        )

    @app.errorhandler(HTTPException)
    def _http(error: HTTPException) -> Response:
        return http_exception_response(error)

    @app.errorhandler(StaleDataError)
    def _stale(error: StaleDataError) -> Response:
        log.warning("concurrent update refused", extra={"request_id": g.get("request_id")})
        return _problem(concurrency_problem())

    @app.errorhandler(DBAPIError)
    def _database(error: DBAPIError) -> Response:
        problem = database_problem(error)
        if problem is None:
            return _unexpected(error)
        log.warning(
            "database refused the request",
            extra={"request_id": g.get("request_id"), "error": type(error.orig).__name__, "sqlstate": _sqlstate(error)},
        )
        return _problem(problem)

    @app.errorhandler(Exception)
    def _unexpected(error: Exception) -> Response:
        log.exception("unhandled error", extra={"request_id": g.get("request_id")})
        return problem_response(500, detail="An unexpected error occurred. Quote the request id when reporting it.")
