"""Task bookkeeping: each task's life after it was admitted, until it is finished.

Who starts a task's clock, what a child's answer means for it, what a timeout, a cancellation,
an over-limit child or a dead child does to it, and what it gives back when it is over. The
pool decides *when* tasks start (``pool.py``), ``workers.py`` owns the processes; this module
owns the outcome of every task and never re-runs anything: a task the child never started (it
was queued behind a task whose child died) goes back to the head of the queue, which is not a
re-run; a task that started and failed is reported to its caller, full stop.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time

from . import channel
from .admission import AdmissionQueue, EstimateBook
from .errors import MemoryLimitExceeded, PoolClosed, RemoteError, TaskTimeout, WorkerCrashed
from .monitor import MemoryWatch
from .records import TaskRecord, decode_error, decode_result
from .segments import SegmentStore
from .snapshot import PoolCounters
from .workers import Worker, WorkerManager

logger = logging.getLogger(__name__)


class TaskManager:
    """Settles and finishes task records; every outcome is counted in ``counters``."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        admission: AdmissionQueue[TaskRecord],
        estimates: EstimateBook,
        store: SegmentStore,
        workers: WorkerManager,
        watch: MemoryWatch,
        counters: PoolCounters,
    ) -> None:
        self._loop = loop
        self._admission = admission
        self._estimates = estimates
        self._store = store
        self._workers = workers
        self._watch = watch
        self.counters = counters

    def dispatch(self, record: TaskRecord, worker: Worker) -> None:
        """Send an admitted task to a child; its clock starts when it reaches the head."""
        record.worker = worker
        self._workers.send_task(worker, record)
        if worker.task is record:
            self._start_clock(record)

    def _start_clock(self, record: TaskRecord) -> None:
        self._admission.start(record)
        record.started_at = time.monotonic()
        record.oom_kills_at_start = self._watch.oom_kills
        if record.timeout is not None:
            record.timer = self._loop.call_later(record.timeout, self._on_timeout, record)
        if record.cancel_requested:
            # Cancelled while queued in the child: if no SKIPPED arrives with this batch of
            # frames, the child may have started it, so it is treated like a running task.
            self._loop.call_soon(self._cancel_if_running, record)

    def _next_head(self, worker: Worker) -> None:
        head = worker.task
        if head is not None and head.started_at is None:
            self._start_clock(head)

    # -- what the child says ---------------------------------------------------------------

    def on_frame(self, worker: Worker, frame: bytes) -> None:
        kind = frame[:1]
        if kind == channel.SEGMENT:
            segment = self._store.adopt(frame[1:].decode())
            head = worker.task
            if head is not None:
                head.segments.append(segment)
            else:
                self._store.finish([segment])
        elif kind == channel.SKIPPED:
            self._on_skipped(worker, int.from_bytes(frame[1:9], "big"))
        elif kind in (channel.RESULT, channel.ERROR):
            self._on_answer(worker, frame)
        else:
            self._protocol_error(worker, f"unexpected frame kind {kind!r}")

    def _on_answer(self, worker: Worker, frame: bytes) -> None:
        record = worker.task
        task_id, peak, ran, _ = channel.ANSWER_HEAD.unpack_from(frame, 1)
        if record is None or task_id != record.task_id:
            self._protocol_error(worker, f"answer for task {task_id}, which it is not running")
            return
        record.reported_peak = peak
        worker.last_peak = peak
        if frame[:1] == channel.RESULT:
            self._estimates.observe_duration(record.function, ran)
            try:
                value = decode_result(frame, record, self._store)
            except Exception as exc:
                error = RemoteError(
                    type(exc).__qualname__,
                    f"the result of {record.function} could not be decoded in the parent: {exc}",
                    "(raised while unpickling the result in the parent)",
                )
                self._settle(record, "error", error=error)
            else:
                self._settle(record, "result", value=value)
        else:
            self._settle(record, "error", error=decode_error(frame, worker.pid))
        self.finish(record)
        self._workers.task_done(worker, record)
        self._next_head(worker)

    def _on_skipped(self, worker: Worker, task_id: int) -> None:
        for record in worker.inflight:
            if record.task_id == task_id:
                record.ended_by = record.ended_by or "cancelled"
                self.finish(record)
                self._workers.task_done(worker, record, ran=False)
                self._next_head(worker)
                return

    def _settle(
        self, record: TaskRecord, ended_by: str, *, value: object = None,
        error: BaseException | None = None,
    ) -> None:
        if record.settle(value=value, error=error):
            record.ended_by = ended_by
            if error is None:
                self.counters.completed += 1
            else:
                self.counters.errors += 1

    def _protocol_error(self, worker: Worker, what: str) -> None:
        logger.error("process pool: %s sent %s; killing it", worker, what)
        self._workers.kill(worker)

    def on_exit(self, worker: Worker) -> None:
        """A child is gone: its running task failed (unless already settled), the tasks queued
        behind it never started and go back to the head of the queue."""
        records = list(worker.inflight)
        worker.inflight.clear()
        if not records:
            return
        head, queued = records[0], records[1:]
        if head.settle(error=self._death_error(worker, head)):
            head.ended_by = "crash"
            self.counters.crashes += 1
        self.finish(head)
        requeue: list[TaskRecord] = []
        for record in queued:
            if record.cancel_requested or record.future.done():
                record.ended_by = record.ended_by or "cancelled"
                self.finish(record)
            else:
                # Its clock may have started in the instant before the child died: reset it.
                if record.timer is not None:
                    record.timer.cancel()
                    record.timer = None
                record.worker = None
                record.started_at = None
                requeue.append(record)
        self._admission.requeue(requeue)

    def _death_error(self, worker: Worker, record: TaskRecord) -> WorkerCrashed:
        exitcode = worker.exitcode
        likely_oom = False
        if exitcode == -signal.SIGKILL:
            now = self._watch.probe.oom_kill_count()
            before = record.oom_kills_at_start
            likely_oom = now is not None and before is not None and now > before
        if likely_oom:
            self.counters.likely_oom += 1
        return WorkerCrashed(worker.pid, exitcode, function=record.function, likely_oom=likely_oom)

    # -- what the caller or the clock does -------------------------------------------------

    def abandon(self, record: TaskRecord) -> None:
        """The caller stopped waiting: drop the task if it has not started, else kill its child."""
        if record.finished or record.cancel_requested:
            return
        self.counters.cancelled += 1
        worker = record.worker
        if worker is None:
            if self._admission.remove(record):
                record.ended_by = "cancelled"
                record.finished = True
                self._store.finish(record.segments)
            return
        if worker.task is record:
            record.ended_by = record.ended_by or "cancelled"
            self._workers.terminate(worker)
            return
        record.cancel_requested = True
        self._workers.cancel_queued(worker, record)

    def _cancel_if_running(self, record: TaskRecord) -> None:
        worker = record.worker
        if worker is not None and worker.task is record and not record.finished:
            record.ended_by = record.ended_by or "cancelled"
            self._workers.terminate(worker)

    def _on_timeout(self, record: TaskRecord) -> None:
        record.timer = None
        worker = record.worker
        if record.finished or worker is None or record.timeout is None:
            return
        if record.settle(error=TaskTimeout(record.function, record.timeout, worker.pid)):
            record.ended_by = "timeout"
            self.counters.timeouts += 1
        self._workers.terminate(worker)

    def kill_for_memory(self, worker: Worker, record: TaskRecord, rss: int, limit: int) -> None:
        error = MemoryLimitExceeded(
            worker.pid,
            function=record.function,
            peak_bytes=max(rss, record.peak_rss),
            limit_bytes=limit,
            estimate_bytes=record.estimate,
        )
        if record.settle(error=error):
            record.ended_by = "memory"
            self.counters.memory_kills += 1
        self._workers.kill(worker)

    def close(self, record: TaskRecord, why: str) -> None:
        """Fail a task because the pool stops (it may still be running: the caller kills it)."""
        if record.settle(error=PoolClosed(why)):
            record.ended_by = "closed"
            self.counters.closed += 1

    def finish(self, record: TaskRecord) -> None:
        """Give back what a task held, once its child no longer runs it."""
        if record.finished:
            return
        record.finished = True
        if record.timer is not None:
            record.timer.cancel()
            record.timer = None
        self._admission.release(record)
        peak = record.observed_peak()
        if peak:
            self._estimates.observe(record.function, peak)
        self._store.finish(record.segments)
