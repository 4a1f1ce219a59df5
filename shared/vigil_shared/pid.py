"""This process's id, kept: ``os.getpid()`` is a system call (glibc no longer caches it).

Objects that must not be shared across a fork (a pooled connection, a kept database connection)
compare the pid they were made in with the current one on every use; on the gateway's forwarded
read that was three ``getpid`` calls per request. The kept value is renewed in a child forked by
Python (``os.fork``: gunicorn's workers, multiprocessing, Celery's prefork pool), the only forks
that go on running Python.
"""

from __future__ import annotations

import os

_pid = os.getpid()


def _forked() -> None:
    global _pid
    _pid = os.getpid()


os.register_at_fork(after_in_child=_forked)


def current_pid() -> int:
    """``os.getpid()`` of this process, without the system call."""
    return _pid
