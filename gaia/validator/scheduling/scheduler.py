"""The Scheduler service: enqueues each schedule's slots as they come due.

It keeps nothing that matters in memory. On its first pass it derives the slots owed from the
clock and each schedule's catch-up policy; the deterministic slot ids make the queue the record
of what was enqueued, so a restarted scheduler, or several schedulers on one queue (one per
worker, no leader), enqueue each slot at most once while the queue retains its job.

Between passes it sleeps until the next slot is due (at most a minute, so a step of the wall
clock is noticed), and ``stop()`` wakes it. A queue error is logged and that schedule is tried
again after a backoff (1 s doubling to 60 s); the other schedules go on. A slot blocked by the
schedule's previous run, still active, is tried again every ``recheck`` seconds until it is
enqueued or its policy drops it (see :class:`~gaia.validator.scheduling.schedule.CatchUp`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import TracebackType

from gaia.validator.core.errors import QueueClosed
from gaia.validator.core.queue import Queue
from gaia.validator.scheduling.backlog import Backlog
from gaia.validator.scheduling.placement import Placement, SlotPlacement, place_slot
from gaia.validator.scheduling.schedule import CatchUp, Schedule

log = logging.getLogger("gaia.scheduler")

MAX_SLEEP_SECONDS = 60.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0


@dataclass
class _Track:
    """A schedule's backlog and when it may be tried again."""

    backlog: Backlog
    error_until: float = float("-inf")
    backoff: float = 0.0
    blocked_slot: int | None = None
    recheck_at: float = float("-inf")


class Scheduler:
    """Enqueue the slots of ``schedules`` into ``queue`` as they come due.

    ``clock`` gives POSIX seconds (``time.time``); ``recheck`` is how often (seconds) a slot
    blocked by the schedule's still-active previous run is tried again; ``stop_grace`` is how
    long ``stop()`` lets an enqueue in flight finish before cancelling it (harmless: a slot's
    enqueue can be repeated). ``retention``: how long the queue keeps finished jobs (the
    backends' default, one day): at start, no slot that old is caught up, since whether it ran
    can no longer be told from the queue.
    """

    def __init__(
        self,
        queue: Queue,
        schedules: Iterable[Schedule],
        *,
        clock: Callable[[], float] = time.time,
        recheck: float = 10.0,
        stop_grace: float = 10.0,
        retention: float = 86_400.0,
    ) -> None:
        self.schedules = tuple(schedules)
        for schedule in self.schedules:
            if not isinstance(schedule, Schedule):
                raise TypeError(f"schedules must be Schedule objects, got {schedule!r}")
        names = [schedule.name for schedule in self.schedules]
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"schedule names must be unique; repeated: {', '.join(repeated)}")
        if not recheck > 0:
            raise ValueError(f"recheck must be > 0 seconds, got {recheck}")
        if not stop_grace >= 0:
            raise ValueError(f"stop_grace must be >= 0 seconds, got {stop_grace}")
        if not retention > 0:
            raise ValueError(f"retention must be > 0 seconds, got {retention}")
        self._retention = retention
        self._queue = queue
        self._clock = clock
        self._recheck = recheck
        self._stop_grace = stop_grace
        self._tracks: list[_Track] | None = None
        self._pass_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the loop; its first pass enqueues what the catch-up policies owe."""
        if self._loop_task is not None or self._stopping.is_set():
            raise RuntimeError("a scheduler starts once")
        self._loop_task = asyncio.create_task(self._loop(), name="gaia-scheduler")
        log.info("scheduler started: %s", ", ".join(s.name for s in self.schedules) or "none")

    async def stop(self) -> None:
        """Stop the loop: an enqueue in flight finishes (up to ``stop_grace``), no new one
        starts. Safe to call more than once, or before ``start``."""
        self._stopping.set()
        task = self._loop_task
        if task is None or task.done():
            return
        done, _ = await asyncio.wait([task], timeout=self._stop_grace)
        if not done:
            log.warning(
                "scheduler: an enqueue did not finish within %.1f s of stop; cancelled "
                "(the slot is enqueued by the next pass of any scheduler if it was not stored)",
                self._stop_grace,
            )
            task.cancel()
            await asyncio.wait([task])
        log.info("scheduler stopped")

    @property
    def running(self) -> bool:
        return self._loop_task is not None and not self._loop_task.done()

    async def __aenter__(self) -> Scheduler:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _loop(self) -> None:
        failure_backoff = 0.0
        while not self._stopping.is_set():
            try:
                wake_at = await self.run_due()
                failure_backoff = 0.0
            except QueueClosed:
                log.error("scheduler: the queue is closed; no more slots are enqueued")
                return
            except Exception:
                failure_backoff = _backoff(failure_backoff)
                log.exception("scheduler pass failed; next pass in %.0f s", failure_backoff)
                wake_at = self._clock() + failure_backoff
            delay = min(MAX_SLEEP_SECONDS, wake_at - self._clock())
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)

    # -- one pass --------------------------------------------------------------------------
    async def run_due(self) -> float:
        """One pass: enqueue every slot that is due now and may run. Returns the clock time at
        which the next pass is needed (infinity with no schedules). The loop calls this; a
        caller driving its own clock (a test) may call it instead of ``start()``."""
        async with self._pass_lock:
            now = self._clock()
            if self._tracks is None:
                self._tracks = [self._start_track(s, now) for s in self.schedules]
            wake_at = float("inf")
            for track in self._tracks:
                if self._stopping.is_set():
                    break
                wake_at = min(wake_at, await self._serve(track, now))
            return wake_at

    def _start_track(self, schedule: Schedule, now: float) -> _Track:
        backlog = Backlog.at_start(schedule, now, self._retention)
        latest = schedule.latest_due(now)
        if schedule.catch_up is not CatchUp.NONE and latest is not None and backlog.head is None:
            log.warning(
                "schedule %s: slot %s is older than the queue's retention (%.0f s), so whether "
                "it ran cannot be told; not caught up",
                schedule.name,
                schedule.job_id(latest),
                self._retention,
            )
        return _Track(backlog)

    async def _serve(self, track: _Track, now: float) -> float:
        """Enqueue the schedule's waiting slots, oldest first, while they can be; return when
        to try again."""
        backlog = track.backlog
        schedule = backlog.schedule
        _report_dropped(schedule, backlog.advance(now), "missed")
        while (head := backlog.head) is not None and not self._stopping.is_set():
            if now < track.error_until:
                return min(track.error_until, backlog.next_due)
            if head == track.blocked_slot and now < track.recheck_at:
                return min(track.recheck_at, backlog.next_due)
            try:
                placed = await place_slot(self._queue, schedule, head, now)
            except QueueClosed:
                raise
            except Exception as exc:
                track.backoff = _backoff(track.backoff)
                track.error_until = now + track.backoff
                log.warning(
                    "schedule %s: enqueueing slot %s failed (%s: %s); trying again in %.0f s",
                    schedule.name,
                    schedule.job_id(head),
                    type(exc).__name__,
                    exc,
                    track.backoff,
                )
                continue
            track.backoff, track.error_until = 0.0, float("-inf")
            if placed.placement is Placement.BLOCKED:
                self._blocked(track, head, placed, now)
            else:
                backlog.settle_head()
                log.log(
                    logging.INFO if placed.placement is Placement.ENQUEUED else logging.DEBUG,
                    "schedule %s: slot job %s %s",
                    schedule.name,
                    placed.job.id,
                    placed.placement.value,
                )
        return backlog.next_due

    def _blocked(self, track: _Track, head: int, placed: SlotPlacement, now: float) -> None:
        backlog = track.backlog
        schedule = backlog.schedule
        active_slot = schedule.slot_of(placed.job.id)
        if active_slot is not None and active_slot > head:
            # a newer slot runs already (another scheduler's clock is ahead): older ones never
            # run after it
            _report_dropped(schedule, backlog.supersede(active_slot), "superseded")
            return
        if track.blocked_slot != head:
            log.info(
                "schedule %s: slot %s waits: the schedule's run %s is still %s",
                schedule.name,
                schedule.job_id(head),
                placed.job.id,
                placed.job.status.value,
            )
        track.blocked_slot = head
        track.recheck_at = now + self._recheck


def _backoff(previous: float) -> float:
    """The wait after another failure: 1 s, then doubling, at most a minute."""
    return min(MAX_BACKOFF_SECONDS, max(FIRST_BACKOFF_SECONDS, 2.0 * previous))


def _report_dropped(schedule: Schedule, dropped: range, why: str) -> None:
    if not dropped:
        return
    if len(dropped) == 1:
        slots = schedule.job_id(dropped[0])
    else:
        first, last = schedule.job_id(dropped[0]), schedule.job_id(dropped[-1])
        slots = f"{len(dropped)} slots, {first} to {last}"
    log.warning(
        "schedule %s: %s skipped (%s; catch_up=%s)", schedule.name, slots, why, schedule.catch_up
    )
