"""Resolved identities, reused between calls while nothing about access has changed.

Resolving a caller's rights takes several queries; a call needs only to know that nothing changed
since the last resolution. Every change that affects access bumps ``auth_state.epoch`` in its own
transaction (:func:`bump`), and every call reads that one integer (:meth:`IdentityCache.epoch`):
an unchanged epoch means the cached identity still holds.

The identity token passed on to the services is signed once per entry (caller and epoch) and reused
for half its lifetime; the call's request id (services record it in histories and logs) is bound to
it per call by an HMAC (:meth:`IdentityCache.signed_token`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Table, insert, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from vigil_shared.db import Database, build_engine
from vigil_shared.identity import Identity, request_binding, sign_claims
from vigil_shared.pid import current_pid

from .models import AuthState
from .wal_signal import WalSignal

MAX_ENTRIES = 10_000
EPOCH_QUERY = "SELECT epoch FROM auth_state WHERE id = 1"


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
    token: str | None = None  # those claims signed, reused until token_renew_at (see signed_token)
    token_renew_at: float = 0.0


class IdentityCache:
    def __init__(self, db: Database):
        self.db = db
        self._epoch_engine = build_engine(db.url, autocommit=True, pool_size=db.pool_size)
        self._dbapi_error = self._epoch_engine.dialect.loaded_dbapi.Error
        self._entries: dict[tuple, Entry] = {}
        self._lock = threading.Lock()
        self._held = threading.local()  # conn, pid: this thread's autocommit connection (epoch, audit)
        self._inserts: dict[tuple, tuple[str, list, list[str] | None]] = {}  # (table, columns) -> prepared
        # SQLite: the WAL-index header the epoch was last read under, and that epoch (see epoch())
        self._on_sqlite = self._epoch_engine.dialect.name == "sqlite"
        self._signal: WalSignal | None = None
        self._signal_pid: int | None = None
        self._known: tuple[bytes, int] | None = None
        self._inherited: list[WalSignal] = []

    def dispose(self) -> None:
        if self._signal is not None and self._signal_pid == current_pid():
            self._signal.close()
        self._signal, self._signal_pid, self._known = None, None, None
        held = getattr(self._held, "conn", None)
        if held is not None:
            self._held.conn = None
            held.close()
        self._epoch_engine.dispose()

    def _connection(self) -> Connection:
        """This thread's autocommit connection, checked out of the pool once and kept (a web thread reads
        the epoch on every call; the pool's checkout and return cost about as much as the query)."""
        held = getattr(self._held, "conn", None)
        if held is None or self._held.pid != current_pid():
            held = self._held.conn = self._epoch_engine.connect()
            self._held.pid = current_pid()
        return held

    def insert(self, table: Table, row: dict[str, Any]) -> None:
        """One row into ``table`` on this thread's kept connection, committed when this returns.

        Sent on the DBAPI connection itself, as :meth:`epoch` reads: the statement is compiled once per
        table and set of columns, each value converted by its column type's own bind processor (the
        statement and values SQLAlchemy would send, without RETURNING the id nobody reads). Writing
        the same row through SQLAlchemy's ``Connection`` (:meth:`write`) cost the gateway about a tenth
        of a technician lookup's CPU. A connection the database dropped is discarded and the row sent
        once more on a fresh one (an entry may then be written twice, never lost).
        """
        key = (table.name, tuple(row))
        prepared = self._inserts.get(key)
        if prepared is None:
            prepared = self._inserts[key] = self._prepare_insert(table, tuple(row))
        sql, converters, order = prepared
        values = {
            name: value if convert is None else convert(value)
            for (name, convert), value in zip(converters, row.values(), strict=True)
        }
        self._on_dbapi(sql, values if order is None else [values[name] for name in order], fetch=False)

    def _prepare_insert(self, table: Table, columns: tuple[str, ...]) -> tuple[str, list, list[str] | None]:
        dialect = self._epoch_engine.dialect
        compiled = insert(table).compile(dialect=dialect, column_keys=list(columns), for_executemany=True)
        converters = [(name, table.c[name].type.dialect_impl(dialect).bind_processor(dialect)) for name in columns]
        order = compiled.positiontup if compiled.positional else None
        return str(compiled), converters, None if order is None else list(order)

    def epoch(self) -> int:
        """The current epoch: one integer per call, one round trip, or on SQLite none while nothing
        committed since it was last read.

        Read on the DBAPI connection itself, held by the calling thread (:meth:`_connection`):
        SQLAlchemy's ``Connection`` around a single statement cost about three times the query's own
        client CPU (55 against 20 µs a call, measured on PostgreSQL), a sizeable share of what
        forwarding a call costs the gateway.

        On SQLite (WAL mode) the database's WAL-index header, which every commit rewrites before it
        returns, is taken before the epoch is read; while the header stays the same, no transaction
        has committed since and the epoch read under it is still current (:mod:`.wal_signal`). A
        revocation therefore still applies on the next call, without a statement per call.
        """
        signal = self._wal_signal() if self._on_sqlite else None
        header = signal.header() if signal is not None else None
        if header is not None:
            known = self._known
            if known is not None and known[0] == header:
                return known[1]
        row = self._on_dbapi(EPOCH_QUERY, None, fetch=True)
        if row is None or row[0] is None:
            raise RuntimeError("auth_state has no row: run `vigil-gateway migrate`")
        epoch = int(row[0])
        if header is not None:
            self._known = (header, epoch)  # read after the header was taken: current while it stands
        return epoch

    def _wal_signal(self) -> WalSignal | None:
        """This process's watch on the database's WAL-index header, opened on first use (and again in
        a forked child, which holds none of its parent's file locks), or None where there is none."""
        if self._signal_pid == current_pid():
            return self._signal
        with self._lock:
            if self._signal_pid != current_pid():
                if self._signal is not None:  # a parent's: kept, never closed here (its locks are the parent's)
                    self._inherited.append(self._signal)
                self._signal = WalSignal.open(self._epoch_engine.url.database, EPOCH_QUERY)
                self._known = None
                self._signal_pid = current_pid()
        return self._signal

    def _on_dbapi(self, sql: str, params: Any, *, fetch: bool) -> Any:
        """``sql`` run on the DBAPI connection of this thread's kept connection (autocommit); its first
        row when ``fetch``. A connection the database dropped is discarded and ``sql`` run once more on
        a fresh one; other database errors are raised as SQLAlchemy would have raised them."""
        for attempt in (1, 2):
            conn = self._connection()
            cursor = dbapi_connection = None
            try:
                dbapi_connection = conn.connection.dbapi_connection
                assert dbapi_connection is not None, "a kept connection is never detached"
                cursor = dbapi_connection.cursor()
                if params is None:
                    cursor.execute(sql)
                else:
                    cursor.execute(sql, params)
                row = cursor.fetchone() if fetch else None
                cursor.close()
                return row
            except self._dbapi_error as error:
                # A connection the database dropped is discarded and retried once on a fresh one.
                self._held.conn = None
                dropped = self._epoch_engine.dialect.is_disconnect(error, dbapi_connection, cursor)
                if dropped:
                    conn.invalidate(error)
                conn.close()
                if not dropped or attempt == 2:
                    # as SQLAlchemy would have raised it, so the error handlers map it as before
                    raise DBAPIError.instance(
                        sql,
                        None,
                        error,
                        self._dbapi_error,
                        connection_invalidated=dropped,
                        dialect=self._epoch_engine.dialect,
                    ) from error
            except BaseException:
                self._held.conn = None
                conn.close()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

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
    def signed_token(entry: Entry, secret: str, ttl: int, request_id: str | None) -> tuple[str, str]:
        """The service identity token for this call, and the binding of this call's request id to it.

        The token (the cached claims, signed) is reused for half its lifetime by every call of this
        caller under this epoch, so a service checks its signature once, not on every call; the call's
        request id travels beside it, bound by an HMAC (``vigil_shared.identity.request_binding``).
        Signing a token per call (PyJWT) was about a tenth of the gateway's CPU per forwarded call,
        and verifying it as much of the service's.
        """
        now = time.monotonic()
        if entry.token is None or now >= entry.token_renew_at:
            if entry.claims is None:
                entry.claims = entry.identity.to_claims() | {"rid": None}
            entry.token = sign_claims(entry.claims, secret, ttl)
            entry.token_renew_at = now + ttl / 2
        return entry.token, request_binding(entry.token, request_id, secret)
