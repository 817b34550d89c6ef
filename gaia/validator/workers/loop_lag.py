"""Event-loop lag: how late the loop runs a callback scheduled for a known time.

A worker's loop serves every slot, heartbeat and claim; a handler that blocks it (a blocking
call in async code, CPU work that belongs in the process pool) stalls them all, and leases can
expire under jobs that are still running. The monitor wakes every ``interval`` seconds, measures
how late it woke, logs a warning when that exceeds ``warn_after`` and keeps the worst lag seen
(exported as a gauge when a Prometheus registry is given).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Gauge

log = logging.getLogger("gaia.worker")


class LoopLagMonitor:
    def __init__(
        self,
        interval: float = 0.5,
        warn_after: float = 0.25,
        registry: CollectorRegistry | None = None,
        namespace: str = "gaia",
    ) -> None:
        if interval <= 0 or warn_after <= 0:
            raise ValueError("interval and warn_after must be > 0")
        self.interval = interval
        self.warn_after = warn_after
        self.worst = 0.0
        """The largest lag seen since start, in seconds."""
        self._gauge: Gauge | None = None
        if registry is not None:
            from prometheus_client import Gauge

            self._gauge = Gauge(
                "event_loop_lag_seconds",
                "How late the worker's event loop ran its last timed wake-up",
                namespace=namespace,
                registry=registry,
            )
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._watch(), name="loop-lag")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def __aenter__(self) -> LoopLagMonitor:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _watch(self) -> None:
        while True:
            due = time.monotonic() + self.interval
            await asyncio.sleep(self.interval)
            lag = max(0.0, time.monotonic() - due)
            self.worst = max(self.worst, lag)
            if self._gauge is not None:
                self._gauge.set(lag)
            if lag > self.warn_after:
                log.warning(
                    "event loop blocked for about %.2f s: a handler or callback is running "
                    "blocking or CPU-bound code on the loop (move it to the process pool or "
                    "asyncio.to_thread)",
                    lag,
                )
