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
process for as long as the map lives keeps the shared locks that prevent both.

Those are POSIX record locks, which belong to the process: closing *any* descriptor of the file drops
every lock the process holds on it, SQLite's own included (then the next process to open the database
believes it is alone, truncates the ``-shm`` file and rebuilds it, and this process's maps of it, SQLite's
and ours, raise ``SIGBUS``). So the descriptor the map is made from, and the map, are opened once per
process and file and never closed (:data:`_MAPS`): two descriptors per watched database. Anything this module
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

# (pid, device, inode) of a -shm file -> its descriptor and map in this process, never closed: closing
# either would drop this process's record locks on the file, those of its SQLite connections included.
_MAPS: dict[tuple[int, int, int], tuple[int, mmap.mmap]] = {}


def _header_map(path: str) -> mmap.mmap | None:
    """A read-only map of the first two header copies of the ``-shm`` file at ``path``, made once in
    this process (an anchor connection must already hold SQLite's shared lock on the file); None when
    the file is too short to hold them."""
    stat = os.stat(path)  # no descriptor: known by its device and inode
    key = (os.getpid(), stat.st_dev, stat.st_ino)
    known = _MAPS.get(key)
    if known is not None:
        return known[1]
    if stat.st_size < 2 * HEADER_BYTES:
        return None
    fd = os.open(path, os.O_RDONLY)
    shm = mmap.mmap(fd, 2 * HEADER_BYTES, access=mmap.ACCESS_READ)
    _MAPS[key] = (fd, shm)
    return shm


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
            shm = _header_map(f"{database}-shm")
            if shm is None:
                anchor.close()
                return None
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
        """Closes the anchor; the map and its descriptor stay (see :data:`_MAPS`), never read again by this
        watch. A later watch of the same file uses them again."""
        self._anchor.close()
