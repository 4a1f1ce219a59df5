"""The embedded broker: a kombu transport keeping every queue in one SQLite file (``sqlite:///path``).

Why not kombu's filesystem transport: it let a consumer read a message file still being written
(a JSONDecodeError that stopped the worker), listed the whole folder for every message (7–9 events/s
with a few thousand queued) and deleted a message when it was fetched, so a worker killed while
holding one lost it. Here:

- a publish is one INSERT: a consumer sees a whole message or none;
- a consumer claims the oldest visible message of its queue in one write transaction
  (``BEGIN IMMEDIATE`` + ``UPDATE … RETURNING``), so two consumers never get the same message, and
  the claim walks the ``(queue, id)`` index whatever the backlog;
- a claimed message is not deleted but leased (``visible_at`` in the future, ``receipt`` a token of
  this delivery), like SQS's visibility timeout: ack deletes the row, reject/requeue and a clean
  shutdown make it visible again, and a consumer killed with ``kill -9`` stops renewing its leases,
  so its messages come back after ``visibility_timeout`` seconds, or sooner when a consumer on the
  same host sees that the owning process is gone.

WAL mode lets the publishers and consumers of the 13 processes work at once; ``busy_timeout`` makes
a writer wait for the lock instead of failing. ``synchronous=NORMAL`` (as for the embedded
databases) survives a process crash; a power loss may lose the last commits.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from queue import Empty
from typing import Any

from kombu import Connection
from kombu.message import Message
from kombu.transport import TRANSPORT_ALIASES, virtual

from ..processes import pid_alive

SCHEME = "sqlite"
DEFAULT_VISIBILITY_TIMEOUT = 30.0
REAP_INTERVAL = 2.0

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    queue TEXT NOT NULL,
    payload TEXT NOT NULL,
    visible_at REAL NOT NULL,
    owner TEXT,
    receipt TEXT,
    deliveries INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS messages_queue_id ON messages (queue, id, visible_at);
CREATE INDEX IF NOT EXISTS messages_owner ON messages (owner) WHERE owner IS NOT NULL;
"""


def database_path(url: str) -> Path:
    """``sqlite:////abs/broker.sqlite`` or ``sqlite:///relative.sqlite``, as SQLAlchemy reads them."""
    assert url.startswith(f"{SCHEME}://"), url
    path = url[len(f"{SCHEME}:///") :]
    if not path.strip("/"):
        raise ValueError(f"{url!r} names no file; use sqlite:////absolute/path/broker.sqlite")
    return Path(path)


def connect(path: Path, busy_timeout_ms: int = 30000) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(path), timeout=busy_timeout_ms / 1000, isolation_level=None, check_same_thread=False)
    conn.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


class QoS(virtual.QoS):
    """Ack deletes the leased row; reject deletes it or, with requeue, makes it visible again.

    Either frees a prefetch slot, so it wakes the consuming loop at once: kombu's virtual transport
    would otherwise sleep a whole polling interval before taking the next message, which capped a
    worker (prefetch 1) at 1/polling_interval messages a second.
    """

    def ack(self, delivery_tag: str) -> None:
        message = self._delivered.get(delivery_tag)
        if message is not None and delivery_tag not in self._dirty:
            self.channel._finish(message)
        super().ack(delivery_tag)
        self.channel.wake()

    def reject(self, delivery_tag: str, requeue: bool = False) -> None:
        message = self._delivered.get(delivery_tag)
        if message is not None and delivery_tag not in self._dirty:
            if requeue:
                self.channel._release(message)
            else:
                self.channel._finish(message)
        self._quick_ack(delivery_tag)
        self.channel.wake()


class Channel(virtual.Channel):
    QoS = QoS
    # kombu's own annotations infer the exact length of its option tuples, so any addition differs
    from_transport_options = virtual.Channel.from_transport_options + ("visibility_timeout",)  # type: ignore[assignment]
    visibility_timeout = DEFAULT_VISIBILITY_TIMEOUT

    def __init__(self, connection: Transport, **kwargs: Any) -> None:
        super().__init__(connection, **kwargs)
        self._path = database_path(_url_of(self.connection.client))
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._conn_pid = 0
        self._last_renewal = self._last_reap = 0.0

    # --- the database ---------------------------------------------------------------------------
    @property
    def owner(self) -> str:
        return f"{socket.gethostname()}:{os.getpid()}"

    def _db(self) -> sqlite3.Connection:
        if self._conn is None or self._conn_pid != os.getpid():  # never share a connection across fork
            self._conn = connect(self._path)
            self._conn_pid = os.getpid()
        return self._conn

    def _write(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        """One statement in its own write transaction, taken up front so it never fails on upgrade."""
        with self._lock:
            conn = self._db()
            conn.execute("BEGIN IMMEDIATE")
            try:
                rows = conn.execute(sql, params).fetchall()
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return rows

    def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[Any]:
        with self._lock:
            return self._db().execute(sql, params).fetchall()

    # --- what kombu's virtual channel needs -----------------------------------------------------
    def _put(self, queue: str, message: dict[str, Any], **kwargs: Any) -> None:
        self._write(
            "INSERT INTO messages (queue, payload, visible_at) VALUES (?, ?, ?)",
            (queue, json.dumps(message), time.time()),
        )

    def _get(self, queue: str, timeout: float | None = None) -> dict[str, Any]:
        now = time.time()
        # A read first: an idle poll never takes the write lock.
        if not self._read("SELECT 1 FROM messages WHERE queue = ? AND visible_at <= ? LIMIT 1", (queue, now)):
            raise Empty()
        receipt = uuid.uuid4().hex
        rows = self._write(
            "UPDATE messages SET visible_at = ?, owner = ?, receipt = ?, deliveries = deliveries + 1 "
            "WHERE id = (SELECT id FROM messages WHERE queue = ? AND visible_at <= ? ORDER BY id LIMIT 1) "
            "RETURNING id, payload, deliveries",
            (now + self.visibility_timeout, self.owner, receipt, queue, now),
        )
        if not rows:
            raise Empty()
        row_id, payload, deliveries = rows[0]
        message: dict[str, Any] = json.loads(payload)
        properties = message["properties"]
        properties["delivery_tag"] = receipt  # one tag per delivery: a redelivery is a new delivery
        properties["delivery_info"].update(sqlite_id=row_id, sqlite_receipt=receipt)
        if deliveries > 1:
            message["redelivered"] = True
        return message

    def _size(self, queue: str) -> int:
        count: int = self._read("SELECT count(*) FROM messages WHERE queue = ?", (queue,))[0][0]
        return count

    def _purge(self, queue: str) -> int:
        return len(
            self._write("DELETE FROM messages WHERE queue = ? AND visible_at <= ? RETURNING id", (queue, time.time()))
        )

    def _delete(self, queue: str, *args: Any, **kwargs: Any) -> None:
        self._write("DELETE FROM messages WHERE queue = ?", (queue,))

    def _new_queue(self, queue: str, **kwargs: Any) -> None:
        pass  # a queue is its rows

    def _has_queue(self, queue: str, **kwargs: Any) -> bool:
        return True

    # --- leases ---------------------------------------------------------------------------------
    def _finish(self, message: Message) -> None:
        info = message.delivery_info
        if "sqlite_id" in info:
            self._write(
                "DELETE FROM messages WHERE id = ? AND receipt = ?", (info["sqlite_id"], info["sqlite_receipt"])
            )

    def _release(self, message: Message) -> None:
        info = message.delivery_info
        if "sqlite_id" in info:
            self._write(
                "UPDATE messages SET visible_at = ?, owner = NULL, receipt = NULL WHERE id = ? AND receipt = ?",
                (time.time(), info["sqlite_id"], info["sqlite_receipt"]),
            )

    def wake(self) -> None:
        transport = self.connection
        if transport is not None:
            transport.wakeup.set()

    def _restore(self, message: Message) -> None:
        """Unacked at shutdown (or rejected with requeue): visible again, in its original place."""
        self._release(message)

    def renew_leases(self) -> None:
        """Extends this process's leases (every third of the timeout) and, every couple of seconds,
        frees the leases of processes on this host that are gone (``kill -9``), so their messages
        need not wait out the timeout."""
        now = time.time()
        if self.qos._delivered and now - self._last_renewal >= self.visibility_timeout / 3:
            self._last_renewal = now
            self._write(
                "UPDATE messages SET visible_at = ? WHERE owner = ?", (now + self.visibility_timeout, self.owner)
            )
        if now - self._last_reap >= min(REAP_INTERVAL, self.visibility_timeout / 3):
            self._last_reap = now
            host = socket.gethostname()
            for (owner,) in self._read(
                "SELECT DISTINCT owner FROM messages WHERE owner IS NOT NULL AND visible_at > ?", (now,)
            ):
                owner_host, _, pid = owner.rpartition(":")
                if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
                    self._write(
                        "UPDATE messages SET visible_at = ?, owner = NULL, receipt = NULL WHERE owner = ?", (now, owner)
                    )

    def drain_events(self, timeout: float | None = None, callback: Callable[..., Any] | None = None) -> Any:
        if self._consumers:
            self.renew_leases()
        return super().drain_events(timeout=timeout, callback=callback)

    def close(self) -> None:
        super().close()
        if self._conn is not None and self._conn_pid == os.getpid():
            self._conn.close()
        self._conn = None


def _url_of(client: Connection) -> str:
    """The database path from the connection's virtual host (kombu drops the first slash)."""
    return f"{SCHEME}:///{client.virtual_host or ''}"


class Transport(virtual.Transport):
    Channel = Channel
    polling_interval = 0.05
    driver_type = "sqlite"
    driver_name = "sqlite3"
    implements = virtual.Transport.implements.extend(asynchronous=False, exchange_type=frozenset(["direct"]))
    # A locked or unreadable file is an outage, as a dropped socket is: kombu and Celery retry and
    # reconnect instead of stopping the worker or failing the publish.
    connection_errors = virtual.Transport.connection_errors + (sqlite3.OperationalError,)  # type: ignore[assignment]

    def __init__(self, client: Connection, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.wakeup = threading.Event()

    # kombu's virtual transport already narrows the base signature so
    def drain_events(self, connection: Connection, timeout: float | None = None) -> None:  # type: ignore[override]
        """kombu's loop, except that the wait between empty polls ends early when a message is acked."""
        started = time.monotonic()
        while True:
            self.wakeup.clear()
            try:
                assert self.cycle is not None, "kombu sets the cycle up before draining"
                self.cycle.get(self._deliver, timeout=timeout)
                return
            except Empty:
                if timeout is not None and time.monotonic() - started >= timeout:
                    raise TimeoutError() from None
                wait = self.polling_interval
                if timeout is not None:
                    wait = min(wait, max(0.0, timeout - (time.monotonic() - started)))
                self.wakeup.wait(wait)

    @property
    def default_connection_params(self) -> dict[str, Any]:
        return {}  # a file, not a host: no "No hostname was supplied" warning in every log

    def driver_version(self) -> str:
        return sqlite3.sqlite_version


TRANSPORT_ALIASES.setdefault(SCHEME, f"{__name__}:Transport")


def ping(url: str) -> None:
    """Readiness: the broker file opens and answers."""
    conn = connect(database_path(url), busy_timeout_ms=2000)
    try:
        conn.execute("SELECT 1 FROM messages LIMIT 1").fetchall()
    finally:
        conn.close()
