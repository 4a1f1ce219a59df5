"""Database access: one engine per process, short explicit transactions.

Engines are created lazily and re-created after ``fork`` (gunicorn and Celery prefork) so no
connection is ever shared between processes.
"""

from __future__ import annotations

import select
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from sqlalchemy import (
    Connection,
    DateTime,
    Dialect,
    Engine,
    Executable,
    Integer,
    MetaData,
    Row,
    Select,
    Table,
    create_engine,
    event,
    text,
)
from sqlalchemy.engine import make_url
from sqlalchemy.engine.interfaces import DBAPIConnection
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Mapped, Session, declared_attr, mapped_column, sessionmaker
from sqlalchemy.types import TypeDecorator

from .pid import current_pid

_T = TypeVar("_T")

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def never_reuse_ids(table: Table) -> Table:
    """Makes SQLite hand out the ids of ``table`` like a PostgreSQL sequence: never one used before.

    Without ``AUTOINCREMENT`` SQLite gives a new row the highest id in use plus one, so deleting the
    newest customer and creating another hands its id out again, and everything that still names
    the old one (a URL, an ``If-Match``, a late event, a replica, an audit entry) then lands on the
    new record. Applies to a table whose primary key is one generated integer column; other tables
    are left as they are. PostgreSQL ignores the option (its sequences never go back).
    """
    if table.autoincrement_column is not None:
        table.dialect_options["sqlite"]["autoincrement"] = True
    return table


@event.listens_for(Table, "before_create")
def _never_reuse_ids_on_sqlite(table: Table, connection: Connection | None, **_kw: Any) -> None:
    """Every table created on SQLite, by a model or by a migration, is created so: ``op.create_table``
    and each ``batch_alter_table`` rebuild included (SQLite's reflection does not carry the option
    over, so a rebuild would silently drop it otherwise)."""
    if connection is not None and connection.dialect.name == "sqlite":
        never_reuse_ids(table)


class ServiceTables:
    """The first parent of each service's declarative base, which has metadata of its own (each
    service owns its tables)::

        class Base(ServiceTables, DeclarativeBase):
            metadata = service_metadata()

    Every table mapped on it gets :func:`never_reuse_ids`, so a new table is safe without anyone
    remembering to ask; its migration gets it from the ``before_create`` hook above, and
    ``vigil_shared.testing.assert_ids_never_reused`` checks the migrated database of every service.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        table = cls.__dict__.get("__table__")
        if table is not None:
            never_reuse_ids(table)


def service_metadata() -> MetaData:
    """A service's own metadata, with the constraint and index naming its migrations rely on."""
    return MetaData(naming_convention=NAMING_CONVENTION)


def upsert(session: Session, model: Any) -> Any:
    """An ``INSERT`` into ``model`` that takes ``ON CONFLICT`` clauses, for the session's database
    (PostgreSQL in production, SQLite on the embedded default)."""
    from sqlalchemy.dialects import postgresql, sqlite

    dialect = session.get_bind().dialect.name
    return (postgresql.insert if dialect == "postgresql" else sqlite.insert)(model)


def utcnow() -> datetime:
    return datetime.now(UTC)


T = TypeVar("T")


def added(session: Session, record: T) -> T:
    """``record`` added to ``session`` and flushed (its id and defaults are set), returned."""
    session.add(record)
    session.flush()
    return record


Condition = Callable[[Any], Any]  # a filter's value → the SQL condition it adds


def filtered(
    statement: Select[Any],
    conditions: Mapping[str, Condition],
    values: Mapping[str, Any],
    *,
    given: Callable[[Any], bool] = lambda value: value is not None,
) -> Select[Any]:
    """``statement`` narrowed by the condition of each filter whose value is ``given`` (not None, by
    default; ``bool`` for a list that takes an empty value as no filter).

    ``conditions`` declares a list's filters once (name → ``value -> condition``); a name it does not
    declare is a ``TypeError``, as an unknown keyword argument of a hand-written signature would be.
    """
    unknown = set(values) - set(conditions)
    if unknown:
        raise TypeError(f"unknown filters: {', '.join(sorted(unknown))}")
    chosen = {name: values[name] for name in conditions if name in values and given(values[name])}
    return statement.where(*(conditions[name](value) for name, value in chosen.items()))


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite drops the offset otherwise)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None:
            if value.tzinfo is None:
                raise ValueError("naive datetime given to a UTC column")
            value = value.astimezone(UTC)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


def _write_lock_before_reading_for_update(
    _conn: Connection, cursor: Any, _statement: str, _parameters: Any, context: Any, _executemany: bool
) -> None:
    """On SQLite a ``SELECT … FOR UPDATE`` takes the database's write lock (``BEGIN IMMEDIATE``) first.

    SQLite has no row locks and drops the clause, and its driver begins a transaction only at the
    first write: a read-then-write (choose a default, move a counter on) read the same row in two
    sessions at once and one write was lost. With the write lock taken at the read, such sessions take
    turns as PostgreSQL's row lock makes them (more broadly: SQLite has one writer at a time anyway).
    A transaction already writing holds the lock; an autocommit connection is left alone.
    """
    compiled = getattr(context, "compiled", None)
    # the statement's FOR UPDATE request, which SQLite's compiler leaves out of the SQL text
    if compiled is None or getattr(compiled.statement, "_for_update_arg", None) is None:
        return
    dbapi_connection = cursor.connection
    if dbapi_connection.isolation_level is not None and not dbapi_connection.in_transaction:
        cursor.execute("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: DBAPIConnection, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


# On PostgreSQL no session waits for a row lock longer than a request may take (the gateway gives a
# service 10 s): a lock wait that long is a stuck holder, and the waiter fails as a lost race (409 to
# a caller, a retry to an event consumer) instead of hanging with the holder. A transaction left open
# and idle (a leaked session) is ended by the server, so it cannot hold its locks for ever.
LOCK_TIMEOUT_MS = 5_000
IDLE_IN_TRANSACTION_TIMEOUT_MS = 60_000


POOL_SIZE = 5
POOL_MAX = 20  # connections one engine may hold at once, the pool's idle ones included


# Prepared statements each pooled SQLite connection keeps (Python's default is 128). A web process holds
# a dozen connections over its two engines, and under a sustained mix of customer requests their caches
# held 17 MB of the customer web worker (bench/soak_rss.py --probe); at 32, 6 MB, with the same
# requests answered. A statement beyond them is prepared again (tens of microseconds); the hot paths
# use fewer.
SQLITE_CACHED_STATEMENTS = 32


def build_engine(
    url: str, *, autocommit: bool = False, bounded_waits: bool = True, pool_size: int = POOL_SIZE
) -> Engine:
    """``hide_parameters``: a failing statement's values (SSNs, PINs) never reach an error message or log.

    ``autocommit`` engines are for single read statements on a hot path: no transaction to end and
    no liveness probe before each use (the caller retries once on a dropped connection instead).
    A PostgreSQL pool keeps ``pool_size`` idle connections (5 unless told) and opens more for a burst
    up to 20 in all, closing them after: a dozen processes per installation must leave the server's
    connection limit room. A web process passes its thread count: with 8 threads and 5 kept, every
    burst of more than 5 requests opened and closed connections (a connect and a server backend
    each), measured as a few percent of a read's CPU under load.
    ``bounded_waits`` (PostgreSQL): lock waits and idle transactions are bounded as said above;
    migrations, which may wait for the running system's transactions to end, do without.
    """
    parsed = make_url(url)
    options: dict[str, Any] = {"hide_parameters": True}
    if autocommit:
        options["isolation_level"] = "AUTOCOMMIT"
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        connect_args = {"timeout": 10, "check_same_thread": False, "cached_statements": SQLITE_CACHED_STATEMENTS}
        engine = create_engine(url, connect_args=connect_args, **options)
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "before_cursor_execute", _write_lock_before_reading_for_update)
        return engine
    if parsed.get_backend_name() == "postgresql":
        widen_psycopg_query_cache()
    if bounded_waits and parsed.get_backend_name() == "postgresql":
        options["connect_args"] = {
            "options": f"-c lock_timeout={LOCK_TIMEOUT_MS}"
            f" -c idle_in_transaction_session_timeout={IDLE_IN_TRANSACTION_TIMEOUT_MS}"
        }
    engine = create_engine(
        url,
        pool_size=pool_size,
        max_overflow=max(POOL_MAX - pool_size, 0),
        pool_recycle=1800,
        **options,
    )
    if not autocommit:
        probe_when_in_doubt(engine)
    return engine


# A pooled connection is probed before use (``SELECT 1``, SQLAlchemy's pre-ping: a round trip, 4% of
# a customer create's CPU) only when in doubt: when it has been idle for PROBE_AFTER_IDLE_SECONDS
# or more (a firewall or NAT may have dropped it without a word), or when its socket has something
# to read while it sits idle (the server ended it: a restart, a failover, ``pg_terminate_backend``
# and its timeouts all send their error and close the socket before anyone queries it). A connection
# that fails its probe is replaced before use, as with ``pool_pre_ping``.
PROBE_AFTER_IDLE_SECONDS = 5.0
_RETURNED = "vigil_returned_at"  # connection record info: when the connection was last given back


def probe_when_in_doubt(engine: Engine) -> None:
    dialect = engine.dialect

    @event.listens_for(engine, "checkin")
    def _returned(dbapi_connection: DBAPIConnection | None, record: Any) -> None:
        record.info[_RETURNED] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _probe_if_in_doubt(dbapi_connection: DBAPIConnection, record: Any, _proxy: Any) -> None:
        returned = record.info.get(_RETURNED)
        if returned is None:
            return  # just connected
        if time.monotonic() - returned < PROBE_AFTER_IDLE_SECONDS and not _has_input(dbapi_connection):
            return
        try:
            dialect.do_ping(dbapi_connection)
        except Exception as error:  # noqa: BLE001 - whatever a dead connection raises, replace it
            raise DisconnectionError("the pooled connection failed its probe") from error


def _has_input(dbapi_connection: Any) -> bool:
    """Whether an idle connection's socket is readable (or closed), without waiting; True when unknown."""
    try:
        if getattr(dbapi_connection, "closed", False) or getattr(dbapi_connection, "broken", False):
            return True
        poller = select.poll()
        poller.register(dbapi_connection.fileno(), select.POLLIN | select.POLLPRI)
        return bool(poller.poll(0))  # readable, hung up or failed: something happened to it
    except Exception:  # noqa: BLE001 - unknown is doubt: probe it
        return True


# psycopg rewrites a query's ``%(name)s`` placeholders as ``$n`` once per distinct text (an LRU of
# 128), but only for texts of at most 4 kB and 50 parameters: the ORM's INSERT of a whole record
# (a customer: 100 columns, 4.3 kB) was parsed again on every create, a twentieth of its CPU.
# Raised for such statements; the LRU still holds at most 128, a few MB at these sizes (the cap
# is there against multi-row VALUES inserts of thousands of parameters, which stay uncached).
PSYCOPG_CACHED_PARAMS = 128
PSYCOPG_CACHED_LENGTH = 8192


def widen_psycopg_query_cache() -> None:
    from psycopg import _queries  # private: ``test_foundations`` fails if an upgrade renames them

    _queries.MAX_CACHED_STATEMENT_PARAMS = max(_queries.MAX_CACHED_STATEMENT_PARAMS, PSYCOPG_CACHED_PARAMS)
    _queries.MAX_CACHED_STATEMENT_LENGTH = max(_queries.MAX_CACHED_STATEMENT_LENGTH, PSYCOPG_CACHED_LENGTH)


class Timestamps:
    """Model mixin: when the row was made and when it last changed."""

    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow, onupdate=utcnow)


class OptimisticLock:
    """Model mixin: every UPDATE checks and bumps the integer column ``lock_column`` (the ETag), so a
    write made from a stale read fails (``StaleDataError``, answered 409) instead of overwriting."""

    lock_column: ClassVar[str] = "version"

    @declared_attr.directive
    def __mapper_args__(cls) -> dict[str, Any]:
        return {"version_id_col": cls.__table__.c[cls.lock_column]}  # type: ignore[attr-defined]


def version_of(record: Any) -> int:
    """The version a record's ETag carries: its :class:`OptimisticLock` column (``version`` by default)."""
    return int(getattr(record, getattr(record, "lock_column", "version")))


class Versioned(OptimisticLock):
    """Model mixin: the row's ``version``, checked by every UPDATE (see :class:`OptimisticLock`)."""

    version: Mapped[int] = mapped_column(Integer, nullable=False)


class EditedRecord(Versioned, Timestamps):
    """Model mixin of a record edited through the API: ``version`` plus ``created_at``/``updated_at``."""


class Database:
    def __init__(self, url: str, *, pool_size: int = POOL_SIZE):
        self.url = url
        self.pool_size = pool_size
        self._engine: Engine | None = None
        self._pid: int | None = None
        self._sessionmaker: sessionmaker[Session] | None = None
        self._read_engine: Engine | None = None
        self._read_pid: int | None = None

    @property
    def engine(self) -> Engine:
        if self._engine is None or self._pid != current_pid():
            if self._engine is not None:
                self._engine.dispose(close=False)  # inherited over fork: drop, never close the parent's sockets
            self._engine = build_engine(self.url, pool_size=self.pool_size)
            self._sessionmaker = sessionmaker(self._engine, expire_on_commit=False)
            self._pid = current_pid()
        return self._engine

    def new_session(self) -> Session:
        self.engine  # noqa: B018 - makes sure the sessionmaker belongs to this process
        assert self._sessionmaker is not None
        return self._sessionmaker()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on success and rolls back on any error."""
        with self.new_session() as session, session.begin():
            yield session

    def request_session(self) -> Session:
        """The session of the current Flask request, closed at teardown."""
        from flask import g, has_app_context  # noqa: PLC0415 - lazy: workers, relays and the delivery process use no request

        assert has_app_context(), "request_session() needs a Flask app context"
        session: Session | None = g.get("_vigil_session")
        if session is None:
            session = g._vigil_session = self.new_session()
        return session

    def close_request_session(self, _exc: BaseException | None = None) -> None:
        from flask import g  # noqa: PLC0415 - see request_session

        session = g.pop("_vigil_session", None)
        if session is not None:
            session.close()

    @property
    def read_engine(self) -> Engine:
        """An autocommit engine for :meth:`read_first` and other single statements on a hot path (the
        gateway's rate-limit upsert): created on first use, re-created after fork."""
        if self._read_engine is None or self._read_pid != current_pid():
            if self._read_engine is not None:
                self._read_engine.dispose(close=False)
            self._read_engine = build_engine(self.url, autocommit=True, pool_size=self.pool_size)
            self._read_pid = current_pid()
        return self._read_engine

    def read_first(self, statement: Executable, params: dict[str, Any]) -> Row[Any] | None:
        """The first row of one read statement, run outside any transaction and any session.

        For a hot read path whose answer is one statement (a record read by id): no ORM identity
        map, no ``BEGIN``/``ROLLBACK`` round trips and no liveness probe before each use (a request
        session costs all three, about a third of a property read's CPU). See :meth:`read`.
        """
        return self.read(lambda conn: conn.execute(statement, params).first())

    def read(self, work: Callable[[Connection], _T]) -> _T:
        """What ``work`` reads on an autocommit connection of :attr:`read_engine` (reads only).

        A connection the database dropped (a restart, an idle timeout) is discarded and ``work`` run
        once more on a fresh one; SQLAlchemy then also replaces the pool's other connections opened
        before the drop.
        """
        for attempt in (1, 2):
            try:
                with self.read_engine.connect() as conn:
                    return work(conn)
            except DBAPIError as error:
                if not error.connection_invalidated or attempt == 2:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def ping(self) -> None:
        with self.engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
        if self._read_engine is not None:
            self._read_engine.dispose()
            self._read_engine = None
