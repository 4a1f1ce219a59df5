"""The WAL-index watch never costs SQLite its locks on the ``-shm`` file.

POSIX record locks belong to the process and the file: closing *any* descriptor of the file drops every
lock the process holds on it, SQLite's included. SQLite keeps a shared lock on the ``-shm`` file's "DMS"
byte for as long as a connection of the process is open; a process that opens the database and can take
that byte exclusively believes it is alone and truncates the file (then rebuilds it). A gateway web
worker whose lock was dropped that way was killed by ``SIGBUS`` (its maps of the file past the new end)
the moment a restarted gateway worker opened the database: a soak saw its in-flight requests reset.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from vigil_gateway.wal_signal import WalSignal

pytestmark = pytest.mark.skipif(not Path("/proc/locks").exists(), reason="reads the kernel's lock table")


def locks_held(path: str) -> int:
    """Record locks this process holds on ``path`` (from /proc/locks: major:minor:inode, then pid)."""
    inode = os.stat(path).st_ino
    return sum(
        1
        for line in Path("/proc/locks").read_text().splitlines()
        if f":{inode} " in line and f" {os.getpid()} " in line
    )


@pytest.fixture
def database(tmp_path):
    path = str(tmp_path / "watched.db")
    with sqlite3.connect(path, isolation_level=None) as conn:
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("CREATE TABLE t (x INTEGER)")
        conn.execute("INSERT INTO t VALUES (1)")
    conn.close()
    return path


def test_opening_and_closing_the_watch_keeps_the_locks_of_the_process_s_connections(database):
    other = sqlite3.connect(database, isolation_level=None)  # as the app's own pool holds it
    try:
        other.execute("SELECT count(*) FROM t").fetchall()
        before = locks_held(f"{database}-shm")
        assert before >= 1, "SQLite holds its shared lock on the -shm file"
        signal = WalSignal.open(database, "SELECT count(*) FROM t")
        assert signal is not None and signal.header() is not None
        assert locks_held(f"{database}-shm") == before
        signal.close()
        assert locks_held(f"{database}-shm") == before
        again = WalSignal.open(database, "SELECT count(*) FROM t")  # a second watch: no more descriptors
        assert again is not None and again.header() is not None
        assert locks_held(f"{database}-shm") == before
        again.close()
    finally:
        other.close()


def test_another_process_opening_the_database_leaves_the_watched_file_whole(database):
    """The other process finds this one's lock, so it neither truncates nor rebuilds the -shm file: the
    header stays the one seen, and the watch stays valid."""
    signal = WalSignal.open(database, "SELECT count(*) FROM t")
    assert signal is not None
    try:
        seen = signal.header()
        probe = (
            "import os, sqlite3, sys; c = sqlite3.connect(sys.argv[1]);"
            " shm = sys.argv[1] + '-shm'; print(os.stat(shm).st_size);"
            " c.execute('SELECT count(*) FROM t').fetchall(); c.close()"
        )
        subprocess.run([sys.executable, "-c", probe, database], check=True, capture_output=True)
        assert locks_held(f"{database}-shm") >= 1
        assert signal.header() == seen
    finally:
        signal.close()
