"""``Idempotency-Key`` on POST: a retried request is executed once and answered the same way.

Keys are scoped to the caller and kept 24 hours. The same key with another body answers 422; a
second request while the first is still running answers 409. A request that failed (an error
response or an exception) releases its key, so the client's retry really runs.
"""
from __future__ import annotations

import hashlib
from copy import deepcopy
from datetime import timedelta
from functools import wraps

from flask import Response, request
from sqlalchemy.exc import IntegrityError

from .db import utcnow
from .errors import CONFLICT, Problem, validation_problem
from .runtime import current_runtime
from .web import current_identity

IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_LIFETIME = timedelta(hours=24)
REPLAYED_HEADERS = ("Content-Type", "Location", "ETag")

_HEADER_DOC = {"parameters": [{
    "in": "header", "name": IDEMPOTENCY_HEADER, "required": False, "schema": {"type": "string", "maxLength": 200},
    "description": "Makes a retry safe: the first response is returned again for 24 hours.",
}]}


def _request_hash() -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}?{request.query_string.decode('latin-1')}\n".encode())
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def _replay(record) -> Response:
    response = Response(record.response_body, status=record.response_status, headers=record.response_headers or {})
    response.headers["Idempotent-Replayed"] = "true"
    return response


def idempotent(view):
    """Decorates a POST view (place it under ``@requires`` and above the flask-smorest decorators)."""

    @wraps(view)
    def wrapper(*args, **kwargs):
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not 1 <= len(key) <= 200:
            raise validation_problem({IDEMPOTENCY_HEADER: ["Must be 1 to 200 characters."]})
        runtime = current_runtime()
        Record = runtime.messaging.IdempotencyRecord
        caller, digest, now = current_identity().subject, _request_hash(), utcnow()
        try:
            with runtime.db.transaction() as session:
                existing = session.get(Record, (caller, key))
                if existing is not None and existing.expires_at < now:
                    session.delete(existing)
                    session.flush()
                    existing = None
                if existing is None:
                    session.add(Record(caller=caller, key=key, request_hash=digest, state="in_flight",
                                       created_at=now, expires_at=now + KEY_LIFETIME))
        except IntegrityError:  # the same key arrived twice at once
            raise Problem(409, "A request with this Idempotency-Key is still being processed.", type=CONFLICT) from None
        if existing is not None:
            if existing.request_hash != digest:
                raise validation_problem({IDEMPOTENCY_HEADER: ["Already used for a different request."]})
            if existing.state != "done":
                raise Problem(409, "A request with this Idempotency-Key is still being processed.", type=CONFLICT)
            return _replay(existing)
        try:
            response = view(*args, **kwargs)
        except BaseException:
            _release(runtime, Record, caller, key)
            raise
        if response.status_code >= 400:
            _release(runtime, Record, caller, key)
            return response
        with runtime.db.transaction() as session:
            record = session.get(Record, (caller, key))
            record.state = "done"
            record.response_status = response.status_code
            record.response_body = response.get_data(as_text=True)
            record.response_headers = {h: response.headers[h] for h in REPLAYED_HEADERS if h in response.headers}
        return response

    # Listed with the operation's arguments: a manual_doc "parameters" list would replace (not
    # join) the query arguments flask-smorest documents, hiding e.g. ``?allow_duplicates``.
    apidoc = deepcopy(getattr(view, "_apidoc", {}))
    arguments = apidoc.setdefault("arguments", {})
    arguments["parameters"] = [*arguments.get("parameters", []), *deepcopy(_HEADER_DOC["parameters"])]
    wrapper._apidoc = apidoc
    return wrapper


def _release(runtime, Record, caller: str, key: str) -> None:
    with runtime.db.transaction() as session:
        record = session.get(Record, (caller, key))
        if record is not None and record.state == "in_flight":
            session.delete(record)
