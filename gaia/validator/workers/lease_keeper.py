"""Keeps a running job's lease alive: heartbeats while the handler runs.

If the lease is lost (the job was cancelled, or reclaimed after this worker stalled), the keeper
sets the job's cancel event and cancels the handler: its result could not be recorded anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Protocol

from gaia.validator.core.errors import LeaseLost
from gaia.validator.core.job import Progress
from gaia.validator.core.queue import Lease, Queue

log = logging.getLogger("gaia.worker")


class Cancellable(Protocol):
    def cancel(self, msg: str | None = None) -> bool: ...


class LeaseKeeper:
    def __init__(self, queue: Queue, lease: Lease, lease_seconds: float) -> None:
        self.lease = lease
        self.lost = False
        self._queue = queue
        self._lease_seconds = lease_seconds
        self._interval = max(0.05, lease_seconds / 3)
        self._task: asyncio.Task[None] | None = None
        self._victim: Cancellable | None = None
        self._cancel_event: asyncio.Event | None = None

    def start(self, victim: Cancellable, cancel_event: asyncio.Event) -> None:
        self._victim = victim
        self._cancel_event = cancel_event
        self._task = asyncio.create_task(self._loop(), name=f"lease-{self.lease.job_id}")

    async def beat(self, progress: Progress | None = None) -> None:
        """Heartbeat now; on a lost lease, cancel the job."""
        try:
            self.lease = await self._queue.heartbeat(
                self.lease, lease_seconds=self._lease_seconds, progress=progress
            )
        except LeaseLost as exc:
            self._on_lost(str(exc))

    async def _loop(self) -> None:
        while not self.lost:
            await asyncio.sleep(self._interval)
            try:
                await self.beat()
            except Exception:  # connection trouble: keep trying until the lease runs out
                log.warning("heartbeat of job %s failed", self.lease.job_id, exc_info=True)

    def _on_lost(self, reason: str) -> None:
        if self.lost:
            return
        self.lost = True
        log.warning("lease lost, cancelling job %s: %s", self.lease.job_id, reason)
        if self._cancel_event is not None:
            self._cancel_event.set()
        if self._victim is not None:
            self._victim.cancel()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
