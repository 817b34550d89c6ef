"""The memory-aware process pool: ``await pool.run(fn, *args, timeout=..., memory_mb=...)``.

The pool schedules: it decides when a waiting task starts and on which child. ``tasks.py``
settles each task, ``workers.py`` owns the processes, ``admission.py`` says what may start,
``monitor.py`` watches memory, ``segments.py`` owns the shared memory. Every failure reaches
the caller as a typed value (``errors.py``); nothing is ever run twice behind the caller's back.
"""

from __future__ import annotations

import asyncio
import atexit
import functools
import logging
import os
import time
import weakref
from collections.abc import Callable
from typing import TypeVar, cast

from . import shm
from .admission import AdmissionQueue, EstimateBook
from .child import ChildConfig
from .errors import PoolClosed, TaskNotSendable, TaskTooLarge, WorkerStartError
from .memory import MIB, MemoryLimits, MemoryProbe
from .monitor import MemoryWatch, Monitor
from .records import TaskRecord, function_name
from .segments import Segment, SegmentStore
from .settings import PoolSettings
from .snapshot import PoolCounters, PoolSnapshot, RunningTask
from .tasks import TaskManager
from .workers import Worker, WorkerManager, WorkerState

logger = logging.getLogger(__name__)

T = TypeVar("T")

_FILL_IN_THREAD = 4 * MIB  # argument arrays at least this large are copied off the event loop
_START_FAILURES = 3  # children dying before ready, in a row, before waiting tasks are failed


class ProcessPool:
    """Runs functions in spawned child processes, admitted by memory, isolated from crashes."""

    def __init__(self, settings: PoolSettings | None = None, *, probe: MemoryProbe | None = None):
        self.settings = settings or PoolSettings()
        self._probe = probe
        self._state = "new"  # new -> started -> closing -> closed
        self._counters = PoolCounters()
        self._next_task_id = 0
        self._start_failures_in_row = 0
        self._prestart_pending = 0
        self._stopped = asyncio.Event()
        self._exit_hook: Callable[[], None] | None = None

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Resolve memory limits and start the children (idempotent; ``run`` calls it)."""
        if self._state == "started":
            return
        if self._state != "new":
            raise PoolClosed("the process pool was stopped; make a new one")
        settings = self.settings
        loop = asyncio.get_running_loop()
        probe = self._probe or MemoryProbe()
        limits = MemoryLimits.resolve(
            probe,
            budget_mb=settings.memory_budget_mb,
            soft_limit_mb=settings.soft_limit_mb,
            hard_limit_mb=settings.hard_limit_mb,
            min_available_mb=settings.min_available_mb,
        )
        self._loop = loop
        self._limits = limits
        self._watch = MemoryWatch(probe, limits)
        self._admission: AdmissionQueue[TaskRecord] = AdmissionQueue(
            limits.budget_bytes, settings.max_workers * settings.prefetch
        )
        default = int(settings.default_memory_mb * MIB)
        if limits.budget_bytes is not None:
            default = min(default, limits.budget_bytes)
        self._estimates = EstimateBook(default, limits.budget_bytes)
        self._store = SegmentStore(os.getpid(), int(settings.shm_cache_mb * MIB))
        config = ChildConfig(
            parent_pid=os.getpid(),
            preload=tuple(settings.preload),
            initializer=settings.initializer,
            initargs=tuple(settings.initargs),
            shm_threshold=settings.shm_threshold_bytes,
        )
        self._workers = WorkerManager(
            loop, self, config, max_workers=settings.max_workers,
            terminate_grace=settings.terminate_grace,
        )
        self._tasks = TaskManager(
            loop, self._admission, self._estimates, self._store, self._workers, self._watch,
            self._counters,
        )
        self._state = "started"
        self._exit_hook = functools.partial(_stop_at_exit, weakref.ref(self))
        atexit.register(self._exit_hook)
        self._watch.refresh_system()
        self._admission.paused = self._watch.paused
        self._monitor = Monitor(
            settings.sample_interval, self._tick, self._monitor_busy, self._next_idle_deadline
        )
        self._monitor.start()
        # Prestart one child now and the others once the pool is idle: children booting at the
        # same time compete for the CPU with each other and with the first task. Demand (tasks
        # waiting for a child) still spawns at once, see _pump.
        self._prestart_pending = settings.max_workers - 1 if settings.prestart else 0
        if settings.prestart:
            self._spawn()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop: waiting tasks fail with PoolClosed, running ones get ``grace`` seconds to
        finish before their children are killed (PoolClosed), then every child exits."""
        if self._state == "new":
            self._state = "closed"
            self._stopped.set()
            return
        if self._state != "started":
            await self._stopped.wait()
            return
        self._state = "closing"
        for record in self._admission.drain_waiting():
            self._tasks.close(record, "the pool stopped before the task started")
            self._tasks.finish(record)
        running = [r.future for w in self._workers.live() for r in w.inflight if not r.finished]
        if running and grace > 0:
            await asyncio.wait(running, timeout=grace)
        for worker in self._workers.live():
            unfinished = [record for record in worker.inflight if not record.finished]
            for record in unfinished:
                self._tasks.close(record, "the pool stopped while the task was in a child")
            if unfinished:
                self._workers.kill(worker)
            else:
                self._workers.retire(worker)
        await self._workers.wait_all_exited()
        for record in self._admission.drain_waiting():  # requeued behind a crash meanwhile
            self._tasks.close(record, "the pool stopped before the task started")
            self._tasks.finish(record)
        await self._monitor.stop()
        self._store.close()
        if self._exit_hook is not None:
            atexit.unregister(self._exit_hook)
            self._exit_hook = None
        self._state = "closed"
        self._stopped.set()

    async def __aenter__(self) -> ProcessPool:
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()

    # -- running ---------------------------------------------------------------------------

    async def run(
        self,
        fn: Callable[..., T],
        /,
        *args: object,
        timeout: float | None = None,
        memory_mb: float | None = None,
        **kwargs: object,
    ) -> T:
        """Run ``fn(*args, **kwargs)`` in a child and return its result.

        ``fn`` must be importable by name (a module-level function). ``timeout`` bounds the
        running time in the child (queueing excluded); ``memory_mb`` is the task's memory
        estimate for admission (else learned from earlier runs of ``fn``, else the default).
        Failures: the function's own exception (with the remote traceback as its cause),
        WorkerCrashed, MemoryLimitExceeded, TaskTimeout, PoolClosed; never a silent retry.
        Cancelling the awaiting coroutine kills the child running the task.
        """
        if self._state == "new":
            await self.start()
        if self._state != "started":
            raise PoolClosed("the process pool is stopped")
        if asyncio.get_running_loop() is not self._loop:
            raise RuntimeError("a ProcessPool can only be used from the event loop that started it")
        if timeout is not None and not timeout > 0:
            raise ValueError(f"timeout must be > 0 seconds, got {timeout!r}")
        function = function_name(fn)
        estimate, source = self._estimate(function, memory_mb)
        try:
            body, raws = shm.encode((fn, args, kwargs), self.settings.shm_threshold_bytes)
        except Exception as exc:
            raise TaskNotSendable(
                f"cannot send {function} and its arguments to a child process ({exc}); the "
                "function must be importable by name and every argument picklable"
            ) from exc
        buffers, segments = (await self._share(raws)) if raws else (b"", [])
        record = TaskRecord(
            task_id=self._next_task_id,
            function=function,
            call=body,
            buffers=buffers,
            estimate=estimate,
            estimate_source=source,
            timeout=timeout,
            future=self._loop.create_future(),
            segments=segments,
        )
        self._next_task_id += 1
        self._counters.submitted += 1
        self._admission.push(record, estimate)
        if self._admission.waiting_count == 1:
            # Alone in the queue: it may start now. Behind others it cannot (FIFO), and every
            # event that lets the head start (a free child, memory given back) pumps the queue.
            self._pump()
        try:
            box = await record.future
        except asyncio.CancelledError:
            self._tasks.abandon(record)
            self._pump()
            raise
        return cast(T, box.pop())

    def _estimate(self, function: str, memory_mb: float | None) -> tuple[int, str]:
        declared: int | None = None
        if memory_mb is not None:
            if not memory_mb > 0:
                raise ValueError(f"memory_mb must be > 0, got {memory_mb!r}")
            declared = int(memory_mb * MIB)
            limits = self._limits
            for name, limit in (
                ("memory budget", limits.budget_bytes),
                ("per-child hard limit", limits.hard_limit_bytes),
            ):
                if limit is not None and declared > limit:
                    raise TaskTooLarge(
                        f"memory_mb={memory_mb:g} exceeds the pool's {name} of "
                        f"{limit / MIB:.0f} MiB; the task could never run in this pool"
                    )
        return self._estimates.estimate(function, declared)

    async def _share(self, raws: list[memoryview]) -> tuple[bytes, list[Segment]]:
        """Copy large out-of-band buffers into shared segments (off the loop when large)."""
        segments = [self._store.allocate(raw.nbytes) for raw in raws]
        await self._fill(segments, raws)
        if self._state != "started":
            self._store.finish(segments)
            raise PoolClosed("the process pool stopped while the task was being sent")
        shared = [
            shm.SharedBuffer(segment.name, raw.nbytes)
            for segment, raw in zip(segments, raws, strict=True)
        ]
        return shm.pack_descriptors(shared), segments

    async def _fill(self, segments: list[Segment], raws: list[memoryview]) -> None:
        def fill_all() -> None:
            for segment, raw in zip(segments, raws, strict=True):
                SegmentStore.fill(segment, raw)

        if sum(raw.nbytes for raw in raws) < _FILL_IN_THREAD:
            try:
                fill_all()
            except BaseException:
                self._store.finish(segments)
                raise
            return
        copying = self._loop.run_in_executor(None, fill_all)
        try:
            await asyncio.shield(copying)
        except asyncio.CancelledError:
            # The copy thread still writes; give the segments back once it is done.
            copying.add_done_callback(lambda _: self._store.finish(segments))
            raise
        except BaseException:
            self._store.finish(segments)
            raise

    # -- scheduling ------------------------------------------------------------------------

    def _pump(self) -> None:
        """Start every waiting task that may start now; spawn children if some are missing."""
        if self._state != "started":
            return
        admission = self._admission
        workers = self._workers
        while admission.waiting_count:
            if admission.head_admissible():
                worker = workers.idle_worker()
                if worker is not None:
                    self._tasks.dispatch(admission.admit_head(), worker)
                    continue
            if admission.head_may_queue():
                worker = self._prefetch_target(admission.peek())
                if worker is not None:
                    self._tasks.dispatch(admission.admit_head(queued=True), worker)
                    continue
            if admission.head_admissible():
                wanted = admission.waiting_count - workers.count(WorkerState.STARTING)
                while wanted > 0 and workers.can_spawn():
                    self._spawn()
                    wanted -= 1
            break
        self._monitor.wake()

    def _prefetch_target(self, record: TaskRecord) -> Worker | None:
        """A busy child that may take ``record`` ahead of time, if any: only short tasks, only
        behind a short task whose memory estimate covers this one's."""
        settings = self.settings
        if settings.prefetch < 2:
            return None
        estimates = self._estimates
        if not estimates.is_short(record.function, settings.prefetch_below):
            return None
        limit = settings.max_tasks_per_child
        best: Worker | None = None
        for worker in self._workers.workers.values():
            head = worker.task
            if (
                worker.state is not WorkerState.BUSY
                or head is None
                or worker.recycle_after_task
                or len(worker.inflight) >= settings.prefetch
                or head.estimate < record.estimate
                or (limit is not None and worker.tasks_done + len(worker.inflight) >= limit)
                or not estimates.is_short(head.function, settings.prefetch_below)
            ):
                continue
            if best is None or len(worker.inflight) < len(best.inflight):
                best = worker
        return best

    def _spawn(self) -> None:
        self._workers.spawn()
        self._counters.spawned += 1

    # -- events from children (WorkerEvents) -----------------------------------------------

    def worker_ready(self, worker: Worker) -> None:
        self._start_failures_in_row = 0
        self._pump()
        self._continue_prestart()

    def _continue_prestart(self) -> None:
        admission = self._admission
        if self._prestart_pending and not admission.running_count and not admission.waiting_count:
            while self._prestart_pending > 0 and self._workers.can_spawn():
                self._prestart_pending -= 1
                self._spawn()

    def worker_frame(self, worker: Worker, frame: bytes) -> None:
        self._tasks.on_frame(worker, frame)
        soft = self._limits.soft_limit_bytes
        if soft is not None and worker.last_peak > soft:
            # The child's own high-water mark, reported with its last answer, passed the soft
            # limit, possibly between two samples.
            worker.recycle_after_task = True
        if worker.state is WorkerState.IDLE and self._should_recycle(worker):
            self._workers.retire(worker)
        self._pump()
        self._continue_prestart()

    def worker_exited(self, worker: Worker) -> None:
        self._watch.probe.forget(worker.pid)
        self._tasks.on_exit(worker)
        if worker.ready_after is None and self._state == "started":
            self._counters.start_failures += 1
            self._start_failures_in_row += 1
            if worker.init_error is not None or self._start_failures_in_row >= _START_FAILURES:
                self._fail_waiting_on_start(worker)
        self._pump()

    def _should_recycle(self, worker: Worker) -> bool:
        limit = self.settings.max_tasks_per_child
        by_count = limit is not None and worker.tasks_done >= limit
        if not (by_count or worker.recycle_after_task):
            return False
        self._counters.recycled += 1
        if worker.recycle_after_task:
            self._counters.soft_limit_recycles += 1
        return True

    def _fail_waiting_on_start(self, worker: Worker) -> None:
        detail = worker.init_error or f"the last {self._start_failures_in_row} children died"
        error_text = f"child processes cannot start: {detail}"
        logger.error("process pool: %s", error_text)
        for record in self._admission.drain_waiting():
            record.settle(error=WorkerStartError(error_text))
            self._tasks.finish(record)
        self._start_failures_in_row = 0

    # -- monitoring ------------------------------------------------------------------------

    def _monitor_busy(self) -> bool:
        return self._admission.running_count > 0 or self._admission.waiting_count > 0

    def _next_idle_deadline(self) -> float | None:
        timeout = self.settings.idle_timeout
        idle = [w.idle_since for w in self._workers.live() if w.state is WorkerState.IDLE]
        if timeout is None or not idle:
            return None
        return min(idle) + timeout

    def _tick(self) -> None:
        if self._state not in ("started", "closing"):
            return
        if self._watch.refresh_system():
            self._admission.paused = self._watch.paused
            if not self._watch.paused:
                self._pump()
        for worker in self._workers.live():
            verdict = self._watch.sample(worker)
            if verdict is None:
                continue
            self._admission.observe(verdict.record, verdict.rss)
            if verdict.over_hard:
                limit = self._limits.hard_limit_bytes or 0
                self._tasks.kill_for_memory(worker, verdict.record, verdict.rss, limit)
            elif verdict.over_soft:
                worker.recycle_after_task = True
        self._retire_idle()
        self._store.reclaim()

    def _retire_idle(self) -> None:
        timeout = self.settings.idle_timeout
        if timeout is None:
            return
        now = time.monotonic()
        for worker in self._workers.live():
            if worker.state is WorkerState.IDLE and now - worker.idle_since > timeout:
                self._workers.retire(worker)
                self._counters.recycled += 1
                self._counters.idle_recycles += 1

    # -- reporting -------------------------------------------------------------------------

    def snapshot(self) -> PoolSnapshot:
        """The pool's current state and counters (cheap; reads nothing from /proc)."""
        if self._state == "new":
            return PoolSnapshot.empty(self.settings.max_workers, self._counters.copy())
        live = self._workers.live()
        running = tuple(
            RunningTask(
                task_id=record.task_id,
                function=record.function,
                pid=worker.pid,
                rss_bytes=record.last_rss,
                peak_rss_bytes=record.observed_peak(),
                estimate_bytes=record.estimate,
                estimate_source=record.estimate_source,
                elapsed_seconds=record.elapsed(),
            )
            for worker in live
            if (record := worker.task) is not None and not record.finished
        )
        limits = self._limits
        admission = self._admission
        return PoolSnapshot(
            started=True,
            closed=self._state in ("closing", "closed"),
            memory_source=self._watch.probe.source,
            max_workers=self.settings.max_workers,
            workers=len(live),
            idle_workers=sum(1 for w in live if w.state is WorkerState.IDLE),
            starting_workers=sum(1 for w in live if w.state is WorkerState.STARTING),
            child_pids=tuple(w.pid for w in live),
            running=running,
            queued_in_children=sum(max(0, len(w.inflight) - 1) for w in live),
            waiting=admission.waiting_count,
            budget_bytes=limits.budget_bytes,
            held_bytes=admission.held_bytes,
            soft_limit_bytes=limits.soft_limit_bytes,
            hard_limit_bytes=limits.hard_limit_bytes,
            floor_bytes=limits.floor_bytes,
            system_available_bytes=self._watch.system_available,
            admission_paused=admission.paused,
            peak_running=admission.peak_running,
            peak_held_bytes=admission.peak_held_bytes,
            learned_estimates=self._estimates.learned(),
            shared_segments=self._store.counts(),
            counters=self._counters.copy(),
        )


def _stop_at_exit(pool_ref: weakref.ref[ProcessPool]) -> None:
    """Interpreter exit without ``stop()``: kill the children and unlink shared memory."""
    pool = pool_ref()
    if pool is None or pool._state not in ("started", "closing"):
        return
    pool._workers.kill_all_now()
    pool._store.close()
