"""Keeps running jobs' leases alive: one loop per pool heartbeats every held lease.

Each lease is renewed every ``lease_seconds / 3``. If a lease is lost (the job was cancelled, or
reclaimed after this worker stalled), its job's cancel event is set and its task cancelled: its
result could not be recorded anyway. Transient queue errors are logged and retried at the next
tick; fencing makes a late outcome harmless if the lease ran out meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Protocol

from gaia.validator.core.errors import LeaseLost
from gaia.validator.core.job import Progress
from gaia.validator.core.queue import Lease, Queue

log = logging.getLogger("gaia.worker")


class Cancellable(Protocol):
    def cancel(self, msg: str | None = None) -> bool: ...


@dataclass
class Held:
    """One running job's lease, as the heartbeat loop tracks it."""

    lease: Lease
    victim: Cancellable
    cancel_event: asyncio.Event
    next_beat: float
    progress: Progress | None = None
    lost: bool = False
    beating: asyncio.Lock | None = None
    """Serialises this lease's heartbeats; made at the first beat (most jobs never beat)."""


class Heartbeats:
    def __init__(self, queue: Queue, lease_seconds: float) -> None:
        self._queue = queue
        self._lease_seconds = lease_seconds
        self._interval = max(0.05, lease_seconds / 3)
        self._held: dict[str, Held] = {}
        self._task: asyncio.Task[None] | None = None
        self._changed = asyncio.Event()

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="heartbeats")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def hold(self, lease: Lease, victim: Cancellable, cancel_event: asyncio.Event) -> Held:
        held = Held(lease, victim, cancel_event, time.monotonic() + self._interval)
        self._held[lease.job_id] = held
        return held

    def drop(self, held: Held) -> None:
        self._held.pop(held.lease.job_id, None)

    async def beat(self, held: Held, progress: Progress | None = None) -> None:
        """Heartbeat one lease now (the handler asked, or it is due)."""
        if progress is not None:
            held.progress = progress
        if held.beating is None:
            held.beating = asyncio.Lock()
        async with held.beating:
            if held.lost:
                return
            try:
                held.lease = await self._queue.heartbeat(
                    held.lease, lease_seconds=self._lease_seconds, progress=held.progress
                )
            except LeaseLost as exc:
                self._lose(held, str(exc))
                return
            held.next_beat = time.monotonic() + self._interval

    async def _loop(self) -> None:
        while True:
            now = time.monotonic()
            due = [held for held in self._held.values() if held.next_beat <= now]
            if due:
                results = await asyncio.gather(
                    *(self.beat(held) for held in due), return_exceptions=True
                )
                for held, result in zip(due, results, strict=True):
                    if isinstance(result, Exception):
                        held.next_beat = time.monotonic() + min(1.0, self._interval)
                        log.warning("heartbeat of job %s failed: %r", held.lease.job_id, result)
            await asyncio.sleep(self._next_wait())

    def _next_wait(self) -> float:
        if not self._held:
            return self._interval
        earliest = min(held.next_beat for held in self._held.values())
        return min(self._interval, max(0.01, earliest - time.monotonic()))

    def _lose(self, held: Held, reason: str) -> None:
        held.lost = True
        if self._held.get(held.lease.job_id) is not held:
            return  # its handler has finished; the outcome's write is fenced by the lease
        log.warning("lease lost, cancelling job %s: %s", held.lease.job_id, reason)
        held.cancel_event.set()
        held.victim.cancel()
