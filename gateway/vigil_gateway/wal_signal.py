"""Whether an SQLite database in WAL mode may have changed, without a query: its WAL-index header.

The gateway reads ``auth_state.epoch`` on every call so that a revocation applies on the next call.
On SQLite that read was a statement on a kept connection: a read-mark lock and unlock (two ``fcntl``
calls) and four releases of the GIL (reset, step, step, reset), each a chance for another thread to
take the interpreter and for this one to wait for it back. Under load that was most of what the
embedded gateway spent in the kernel beyond the floor app.

In WAL mode every commit rewrites the WAL-index header at the start of the ``-shm`` file before the
commit returns (https://www.sqlite.org/walformat.html, "The WAL-Index Header": two copies of a
48-byte header whose ``iChange`` counter grows with each transaction, ``mxFrame`` and the salts with
each commit or log reset). So while the header is the one seen before the epoch was last read, no
transaction has committed since, and that epoch is still the current one; any other header (a commit,
a checkpoint's log restart, a recovery, a write in progress) means the epoch is read again. The
header is read from a read-only map of the file: no system call, the GIL kept.

The map stays valid only while the ``-shm`` file is neither truncated nor deleted, which SQLite does
only when a connection finds itself the last one on the database (it must take the exclusive lock on
the database file, or on the file's "DMS" byte when it opens). An anchor connection held by this
process for as long as the map lives keeps the shared locks that prevent both. Anything this module
does not recognise (another journal mode, a header version other than 3007000, a memory database, a
file it cannot map) turns the signal off: the epoch is then read on every call, as before.
"""

from __future__ import annotations

import mmap
import os
import sqlite3
import sys
from pathlib import Path

HEADER_BYTES = 48  # one copy of the WAL-index header (WalIndexHdr, in the machine's byte order)
HEADER_VERSION = 3007000  # iVersion of the header this reads (SQLite's WALINDEX_MAX_VERSION)


class WalSignal:
    """The WAL-index header of one SQLite database file, read without touching SQLite."""

    def __init__(self, anchor: sqlite3.Connection, shm: mmap.mmap):
        self._anchor = anchor  # held open: its shared locks keep the -shm file from being truncated
        self._shm = shm

    @classmethod
    def open(cls, database: str | None, probe: str) -> WalSignal | None:
        """The signal of the database file ``database``, or None when there is none to watch (not a
        file, not in WAL mode, a header this does not know). ``probe`` is a read run once on the anchor
        connection, so SQLite opens the ``-shm`` file and takes its shared locks before it is mapped."""
        if not database or database == ":memory:" or database.startswith("file:") or not Path(database).is_file():
            return None
        anchor = sqlite3.connect(database, timeout=10, check_same_thread=False, isolation_level=None)
        try:
            mode = anchor.execute("PRAGMA journal_mode").fetchone()
            if mode is None or str(mode[0]).lower() != "wal":
                anchor.close()
                return None
            anchor.execute(probe).fetchall()
            with open(f"{database}-shm", "rb") as handle:
                if os.fstat(handle.fileno()).st_size < 2 * HEADER_BYTES:
                    anchor.close()
                    return None
                shm = mmap.mmap(handle.fileno(), 2 * HEADER_BYTES, access=mmap.ACCESS_READ)
        except (OSError, ValueError, sqlite3.Error):
            anchor.close()
            return None
        signal = cls(anchor, shm)
        if signal.header() is None:
            signal.close()
            return None
        return signal

    def header(self) -> bytes | None:
        """The current header, or None when it cannot be trusted now (its two copies differ: a commit is
        writing it; not initialised; another version). Two reads that return the same bytes mean no
        transaction committed in between."""
        first = self._shm[:HEADER_BYTES]
        if first != self._shm[HEADER_BYTES : 2 * HEADER_BYTES]:
            return None
        if int.from_bytes(first[0:4], sys.byteorder) != HEADER_VERSION or first[12] != 1:  # iVersion, isInit
            return None
        return first

    def close(self) -> None:
        self._shm.close()
        self._anchor.close()
