"""A concurrency cap shared by every credit worker process: at most ``cap`` calls to an outside
system (ADT PreCheck, a credit bureau) in flight at once, however many workers run.

A per-process semaphore cannot do that (two workers of concurrency C make 2·C calls), so the cap
lives in the credit database, which every worker already shares: one row per slot in
``outbound_slots``. Taking a slot is one conditional ``UPDATE`` (the row is free, or its lease ran
out) in a short transaction of its own; two workers racing for the same row cannot both win it (the
loser's ``UPDATE`` matches no row once the winner committed), so the cap holds on PostgreSQL and on
SQLite alike. A worker killed while holding a slot leaves it taken until its lease ends: the lease is
the longest one call can take (the request's timeout plus a margin), never longer.

A caller waits for a free slot, polling with a short, growing, jittered pause (no more than ``cap``
threads of one process poll: the others wait on a local semaphore first); it waits at most ``wait``
seconds, then :class:`SlotUnavailable` (the task tries again later: nothing waits for ever).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import timedelta

from sqlalchemy import or_, select, update
from sqlalchemy.exc import IntegrityError

from vigil_shared.db import Database, utcnow

from .models import OutboundSlot

log = logging.getLogger("vigil.credit.slots")

POLL_FIRST = 0.02  # seconds between looks for a free slot, growing by half each time up to POLL_MAX
POLL_MAX = 0.1


class SlotUnavailable(Exception):
    """No slot came free within the wait: the outside system is saturated (the caller retries later)."""


@dataclass
class SharedSlots:
    """``with slots.hold(): call()`` runs ``call`` holding one of ``cap`` slots named ``name``."""

    db: Database
    name: str
    cap: int
    lease: float  # seconds a slot stays taken if its holder dies without giving it back
    wait: float = 60.0
    sleep: Callable[[float], None] = time.sleep
    _ready: bool = field(default=False, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False)

    def __post_init__(self) -> None:
        if self.cap < 1:
            raise ValueError(f"the concurrency cap of {self.name} must be at least 1, got {self.cap}")
        self._local = threading.BoundedSemaphore(self.cap)

    @contextlib.contextmanager
    def hold(self) -> Iterator[int]:
        holder = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        # no more than ``cap`` threads of this process ask the database: the others wait here, unpolled
        if not self._local.acquire(timeout=self.wait):
            raise SlotUnavailable(f"no free {self.name} slot of {self.cap} within {self.wait:.0f} s")
        try:
            slot = self._acquire(holder)
            try:
                yield slot
            finally:
                self._release(slot, holder)
        finally:
            self._local.release()

    def _ensure_rows(self) -> None:
        """Slots ``0 … cap-1`` exist (created once per process; a concurrent creator's rows are fine)."""
        with self._lock:
            if self._ready:
                return
            with self.db.transaction() as session:
                have = set(session.scalars(select(OutboundSlot.slot).where(OutboundSlot.name == self.name)))
            for slot in sorted(set(range(self.cap)) - have):
                with contextlib.suppress(IntegrityError), self.db.transaction() as session:
                    session.add(OutboundSlot(name=self.name, slot=slot))
            self._ready = True

    def _acquire(self, holder: str) -> int:
        self._ensure_rows()
        deadline = time.monotonic() + self.wait
        pause = POLL_FIRST
        while True:
            slot = self._try_take(holder)
            if slot is not None:
                return slot
            if time.monotonic() >= deadline:
                raise SlotUnavailable(f"no free {self.name} slot of {self.cap} within {self.wait:.0f} s")
            self.sleep(pause * random.uniform(0.5, 1.5))
            pause = min(POLL_MAX, pause * 1.5)

    def _try_take(self, holder: str) -> int | None:
        """One statement: take a free slot, if any. On PostgreSQL the free row is locked with SKIP
        LOCKED (a row another worker is taking is passed over, never waited for) and re-checked once
        locked, so two workers never take the same one; SQLite runs one writer at a time."""
        now = utcnow()
        free = select(OutboundSlot.slot).where(
            OutboundSlot.name == self.name,
            OutboundSlot.slot < self.cap,  # a cap lowered since: the rows above it are never used
            or_(OutboundSlot.holder.is_(None), OutboundSlot.expires_at < now),
        )
        with self.db.transaction() as session:
            return session.scalar(
                update(OutboundSlot)
                .where(
                    OutboundSlot.name == self.name,
                    OutboundSlot.slot == free.limit(1).with_for_update(skip_locked=True).scalar_subquery(),
                )
                .values(holder=holder, expires_at=now + timedelta(seconds=self.lease))
                .returning(OutboundSlot.slot)
                .execution_options(synchronize_session=False)
            )

    def _release(self, slot: int, holder: str) -> None:
        try:
            with self.db.transaction() as session:
                session.execute(
                    update(OutboundSlot)
                    .where(OutboundSlot.name == self.name, OutboundSlot.slot == slot, OutboundSlot.holder == holder)
                    .values(holder=None, expires_at=None)
                    .execution_options(synchronize_session=False)
                )
        except Exception:  # the database went away: the lease frees the slot in time
            log.warning("could not give a slot back", extra={"slot_name": self.name, "slot": slot}, exc_info=True)
