"""``Idempotency-Key`` on POST: a retried request is executed once and answered the same way.

Keys are scoped to the caller and kept 24 hours. The same key with another body answers 422; a
second request while the first is still running answers 409. A request that failed (an error
response or an exception) releases its key, so the client's retry really runs.

Stored replies hold what the first response showed (unmasked SSNs, PINs, an API key's secret), so
the body and the replayed headers are kept only encrypted (Fernet, the process's ``FieldCipher``),
and the request fingerprint is a keyed HMAC, not a bare SHA-256 that would let anyone reading the
table test guesses of a confidential value sent in the body.

Every app registers where its keys live with :func:`register_idempotency`: a service's program
does it with its runtime's database, ``idempotency_keys`` table and cipher; the gateway with its own.
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from functools import wraps
from typing import Any, cast

from flask import Flask, Response, current_app, make_response, request
from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError

from .apidoc import View, document
from .authz import current_identity
from .crypto import DecryptionError, FieldCipher
from .db import Database, utcnow
from .errors import CONFLICT, Problem, validation_problem
from .identity import Identity

IDEMPOTENCY_HEADER = "Idempotency-Key"
KEY_LIFETIME = timedelta(hours=24)
REPLAYED_HEADERS = ("Content-Type", "Location", "ETag")
SEALED = "sealed"  # response_headers holds {"sealed": <Fernet token of the headers>}
RIGHTS = "rights"  # and {"rights": <Fernet token of the rights the reply was made under>}
PRUNE_EVERY = 600.0  # seconds between two deletions of expired keys by one process
EXTENSION = "vigil_idempotency"


@dataclass
class IdempotencyStore:
    """Where one app keeps its keys: a database, a table shaped like ``idempotency_keys``, a cipher."""

    db: Database
    Record: type[Any]  # the app's ``IdempotencyRecord`` (see ``messaging_models``)
    cipher: FieldCipher = field(repr=False)
    _last_prune: float = field(default=0.0, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def fingerprint(self, digest: str) -> str:
        fingerprint = self.cipher.blind_index(digest, normalize=lambda value: value)
        assert fingerprint is not None, "a digest is never empty"
        return fingerprint

    def seal(self, record: Any, response: Response, identity: Identity) -> None:
        headers = {h: response.headers[h] for h in REPLAYED_HEADERS if h in response.headers}
        record.response_status = response.status_code
        record.response_body = self.cipher.encrypt(response.get_data(as_text=True))
        record.response_headers = {
            SEALED: self.cipher.encrypt(json.dumps(headers)),
            RIGHTS: self.cipher.encrypt(json.dumps(_rights_of(identity))),
        }

    def replay(self, record: Any, identity: Identity) -> Response:
        headers = record.response_headers or {}
        body = record.response_body
        if SEALED in headers:
            try:
                if RIGHTS in headers and not _holds(identity, json.loads(self.cipher.decrypt(headers[RIGHTS]))):
                    raise Problem(
                        409,
                        "Your rights have changed since this key's first request: its answer is not shown again, "
                        "and the request is not run again. Read the record, or use a new key.",
                        type=CONFLICT,
                    )
                headers = json.loads(self.cipher.decrypt(headers[SEALED]))
                body = self.cipher.decrypt(body)
            except DecryptionError:
                raise validation_problem(
                    {
                        IDEMPOTENCY_HEADER: [
                            "The first answer to this key can no longer be read (the keys changed); use a new key."
                        ]
                    }
                ) from None
        response = Response(body, status=record.response_status, headers=headers)
        response.headers["Idempotent-Replayed"] = "true"
        return response

    def prune(self) -> None:
        """Deletes expired keys, at most every ``PRUNE_EVERY`` seconds per process (services' relays
        prune too; an app without a relay relies on this)."""
        now = time.monotonic()
        with self._lock:
            if now - self._last_prune < PRUNE_EVERY:
                return
            self._last_prune = now
        with self.db.transaction() as session:
            session.execute(delete(self.Record).where(self.Record.expires_at < utcnow()))


def _rights_of(identity: Identity) -> dict[str, Any]:
    return {
        "permissions": sorted(identity.permissions),
        "locations": {str(location): sorted(perms) for location, perms in identity.locations.items()},
    }


def _holds(identity: Identity, rights: dict[str, Any]) -> bool:
    """Whether ``identity`` holds every right a stored reply was made under (it may hold more).

    A reply shows what its caller could read then (an SSN unmasked, a record of an office): replayed to
    a caller who has lost a right since, it would outlive the rights it came from."""
    if not set(rights.get("permissions", ())) <= identity.permissions:
        return False
    return all(
        set(perms) <= identity.locations.get(int(location), frozenset())
        for location, perms in rights.get("locations", {}).items()
    )


def register_idempotency(app: Flask, db: Database, record_model: type[Any], cipher: FieldCipher) -> IdempotencyStore:
    """Lets ``@idempotent`` views of an app that is not a service runtime keep their keys."""
    store = IdempotencyStore(db, record_model, cipher)
    app.extensions[EXTENSION] = store
    return store


def _store() -> IdempotencyStore:
    store: IdempotencyStore | None = current_app.extensions.get(EXTENSION)
    if store is None:
        raise RuntimeError("@idempotent needs register_idempotency(app, ...) when the app is created")
    return store


HEADER_DOC = {
    "in": "header",
    "name": IDEMPOTENCY_HEADER,
    "required": False,
    "schema": {"type": "string", "maxLength": 200},
    "description": "Makes a retry safe: the first response is returned again for 24 hours.",
}


def _request_hash() -> str:
    digest = hashlib.sha256()
    digest.update(f"{request.method} {request.path}?{request.query_string.decode('latin-1')}\n".encode())
    digest.update(request.get_data(cache=True))
    return digest.hexdigest()


def idempotent(view: View) -> View:
    """Decorates a POST view (place it under ``@requires``, so a refused caller never takes a key, and
    above the flask-smorest decorators, so a replay skips parsing); the operation documents the header
    whatever the order (:mod:`vigil_shared.apidoc`)."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(IDEMPOTENCY_HEADER)
        if key is None:
            return view(*args, **kwargs)
        if not 1 <= len(key) <= 200:
            raise validation_problem({IDEMPOTENCY_HEADER: ["Must be 1 to 200 characters."]})
        store = _store()
        Record = store.Record
        caller, digest, now = current_identity().subject, store.fingerprint(_request_hash()), utcnow()
        try:
            with store.db.transaction() as session:
                existing = session.get(Record, (caller, key))
                if existing is not None and existing.expires_at < now:
                    session.delete(existing)
                    session.flush()
                    existing = None
                if existing is None:
                    session.add(
                        Record(
                            caller=caller,
                            key=key,
                            request_hash=digest,
                            state="in_flight",
                            created_at=now,
                            expires_at=now + KEY_LIFETIME,
                        )
                    )
        except IntegrityError:  # the same key arrived twice at once
            raise Problem(409, "A request with this Idempotency-Key is still being processed.", type=CONFLICT) from None
        if existing is not None:
            if existing.request_hash != digest:
                raise validation_problem({IDEMPOTENCY_HEADER: ["Already used for a different request."]})
            if existing.state != "done":
                raise Problem(409, "A request with this Idempotency-Key is still being processed.", type=CONFLICT)
            return store.replay(existing, current_identity())
        try:
            response = make_response(view(*args, **kwargs))
        except BaseException:
            _release(store, caller, key)
            raise
        if response.status_code >= 400:
            _release(store, caller, key)
            return response
        with store.db.transaction() as session:
            record = session.get(Record, (caller, key))
            assert record is not None, "this request holds the key"
            record.state = "done"
            store.seal(record, response, current_identity())
        store.prune()
        return response

    # Joins the parameters flask-smorest documents (a @blp.doc "parameters" list would replace them).
    return cast(View, document(wrapper, parameters=(HEADER_DOC,)))


def _release(store: IdempotencyStore, caller: str, key: str) -> None:
    with store.db.transaction() as session:
        record = session.get(store.Record, (caller, key))
        if record is not None and record.state == "in_flight":
            session.delete(record)
