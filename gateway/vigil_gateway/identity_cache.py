"""Resolved identities, reused between calls while nothing about access has changed.

Resolving a caller's rights takes several queries; a call needs only to know that nothing changed
since the last resolution. Every change that affects access bumps ``auth_state.epoch`` in its own
transaction (:func:`bump`), and every call reads that one integer (:meth:`IdentityCache.epoch`):
an unchanged epoch means the cached identity still holds.

The identity token passed on to the services is signed per call, because it carries the call's
request id (services record it in histories and logs); only the claims that describe the caller
are cached, so signing costs one HMAC, not a resolution.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from vigil_shared.db import Database, build_engine
from vigil_shared.identity import Identity, sign_claims

from .models import AuthState

MAX_ENTRIES = 10_000


def bump(session: Session) -> None:
    """Marks every cached identity stale; call in the transaction that changes access."""
    session.execute(update(AuthState).where(AuthState.id == 1).values(epoch=AuthState.epoch + 1))


@dataclass
class Entry:
    epoch: int
    identity: Identity
    user_id: int | None
    session_id: str | None
    key_id: int | None = None
    key_creator_id: int | None = None  # an API key's creator, whose rights bound the key's
    expires_at: datetime | None = None  # API keys may expire between two changes of the epoch
    last_used_written: datetime | None = None
    claims: dict | None = None  # the identity's claims, computed once per entry


class IdentityCache:
    def __init__(self, db: Database):
        self.db = db
        self._epoch_engine = build_engine(db.url, autocommit=True)
        self._entries: dict[tuple, Entry] = {}
        self._lock = threading.Lock()

    def dispose(self) -> None:
        self._epoch_engine.dispose()

    def epoch(self) -> int:
        """One integer per call, one round trip: an autocommit connection without a liveness probe."""
        for attempt in (1, 2):
            try:
                with self._epoch_engine.connect() as conn:
                    value = conn.exec_driver_sql("SELECT epoch FROM auth_state WHERE id = 1").scalar()
                break
            except DBAPIError as error:
                if not error.connection_invalidated or attempt == 2:
                    raise  # a connection the database dropped is retried once on a fresh one
        if value is None:
            raise RuntimeError("auth_state has no row: run `vigil-gateway migrate`")
        return value

    def get(self, key: tuple, epoch: int) -> Entry | None:
        entry = self._entries.get(key)
        return entry if entry is not None and entry.epoch == epoch else None

    def put(self, key: tuple, entry: Entry) -> Entry:
        with self._lock:
            if len(self._entries) >= MAX_ENTRIES:
                self._entries.clear()
            self._entries[key] = entry
        return entry

    @staticmethod
    def signed_token(entry: Entry, secret: str, ttl: int, request_id: str | None) -> str:
        """The service identity token for this call: the cached claims plus this call's request id.

        What ``vigil_shared.identity.sign_identity`` signs, minus rebuilding the claims on every call.
        """
        if entry.claims is None:
            entry.claims = entry.identity.to_claims()
        return sign_claims(entry.claims | {"rid": request_id}, secret, ttl)
