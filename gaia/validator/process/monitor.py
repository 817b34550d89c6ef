"""The pool's periodic watch: children's RSS, system memory, idle children, lent segments.

One asyncio task per pool, never on the hot path of a task: it samples every running child's
RSS every ``sample_interval`` seconds (<= 0.25 s) while anything runs or waits, and otherwise
sleeps up to a second (an idle pool costs one wake-up per second). Each reading is a small
/proc (or psutil) read that takes microseconds, so it is done on the loop directly.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from .memory import MIB, MemoryLimits, MemoryProbe
from .records import TaskRecord
from .workers import Worker, WorkerState

logger = logging.getLogger(__name__)

_IDLE_WAKE = 1.0


@dataclass
class MemoryVerdict:
    """What one sample of one busy child calls for."""

    worker: Worker
    record: TaskRecord
    rss: int
    over_hard: bool
    over_soft: bool


class MemoryWatch:
    """Turns readings into verdicts; the pool acts on them."""

    def __init__(self, probe: MemoryProbe, limits: MemoryLimits) -> None:
        self.probe = probe
        self.limits = limits
        self.system_available: int | None = None
        self.oom_kills: int | None = None
        self.paused = False

    def refresh_system(self) -> bool:
        """Re-read system memory; True if admissions just paused or resumed."""
        self.system_available = self.probe.available()
        self.oom_kills = self.probe.oom_kill_count()
        floor = self.limits.floor_bytes
        paused = (
            floor is not None
            and self.system_available is not None
            and self.system_available < floor
        )
        changed = paused != self.paused
        if changed:
            available = (self.system_available or 0) // MIB
            if paused:
                logger.warning(
                    "process pool: system available memory %d MiB is below the floor of %d MiB;"
                    " new tasks wait",
                    available,
                    (floor or 0) // MIB,
                )
            else:
                logger.info("process pool: available memory %d MiB; admissions resume", available)
        self.paused = paused
        return changed

    def sample(self, worker: Worker) -> MemoryVerdict | None:
        """Read a busy child's RSS and compare it with the per-child limits."""
        record = worker.task
        if record is None or worker.state is not WorkerState.BUSY:
            return None
        rss = self.probe.process_rss(worker.pid)
        if rss is None:
            return None
        record.last_rss = rss
        record.peak_rss = max(record.peak_rss, rss)
        hard = self.limits.hard_limit_bytes
        soft = self.limits.soft_limit_bytes
        return MemoryVerdict(
            worker,
            record,
            rss,
            over_hard=hard is not None and rss > hard,
            over_soft=soft is not None and rss > soft,
        )


class Monitor:
    """Runs ``tick`` periodically; ``busy()`` says whether to sample at full rate."""

    def __init__(
        self,
        interval: float,
        tick: Callable[[], None],
        busy: Callable[[], bool],
        next_deadline: Callable[[], float | None],
    ) -> None:
        self._interval = interval
        self._tick = tick
        self._busy = busy
        self._next_deadline = next_deadline
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.sleeping_idle = False

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop(), name="process-monitor")

    def wake(self) -> None:
        """Return to full-rate sampling now (a task started while the monitor idled)."""
        if self.sleeping_idle:
            self._wake.set()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _loop(self) -> None:
        while True:
            if self._busy():
                await asyncio.sleep(self._interval)
            elif await self._idle_wait():
                continue  # woken by a task starting: first sample one interval from now
            try:
                self._tick()
            except Exception:
                logger.exception("process pool monitor tick failed")

    async def _idle_wait(self) -> bool:
        """Sleep until woken (True) or until the next idle deadline or a second passed."""
        delay = _IDLE_WAKE
        deadline = self._next_deadline()
        if deadline is not None:
            delay = max(self._interval, min(delay, deadline - time.monotonic()))
        self.sleeping_idle = True
        self._wake.clear()
        try:
            await asyncio.wait_for(self._wake.wait(), delay)
        except TimeoutError:
            return False
        finally:
            self.sleeping_idle = False
        return True
