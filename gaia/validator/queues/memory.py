"""In-memory queue (``memory://``): the full queue contract inside one event loop.

A real implementation, not a test double: priority order, delays, leases with fencing, a reaper,
dedupe over active states, dead-letter, results with retention and cancellation all behave as on
the durable backends. Nothing survives the process, so use it for tests, demos and pipelines
whose jobs can be re-derived.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable, Collection, Sequence

from gaia.validator.core import lifecycle
from gaia.validator.core.errors import DuplicateJob, InvalidTransition, JobNotFound, QueueClosed
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease, Queue, QueueStats
from gaia.validator.core.status import ACTIVE_STATUSES, TERMINAL_STATUSES, JobStatus
from gaia.validator.queues.wakeup import Wakeup

_ReadyEntry = tuple[int, float, int, str, int]  # (-priority, not_before, seq, job id, generation)
_DelayedEntry = tuple[float, int, str, int]  # (not_before, seq, job id, generation)


class MemoryQueue(Queue):
    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.time,
        result_ttl: float = 86_400.0,
        dead_ttl: float | None = None,
        url: str = "memory://",
    ) -> None:
        self.url = url
        self._clock = clock
        self._result_ttl = result_ttl
        self._dead_ttl = dead_ttl
        self._jobs: dict[str, Job] = {}
        self._seq: dict[str, int] = {}
        self._generation: dict[str, int] = {}
        self._counter = itertools.count()
        self._ready: dict[str, list[_ReadyEntry]] = {}
        self._delayed: dict[str, list[_DelayedEntry]] = {}
        self._dedupe: dict[str, str] = {}
        self._active: set[str] = set()
        self._wakeup = Wakeup()
        self._closed = False

    # -- writing ---------------------------------------------------------------------------
    async def enqueue(self, job: Job) -> Job:
        return (await self.enqueue_many([job]))[0]

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        self._check_open()
        lifecycle.check_enqueueable(jobs)
        for job_id in lifecycle.batch_ids(jobs):  # all or nothing: refuse before storing any
            if job_id in self._jobs:
                raise DuplicateJob(f"a job with id {job_id} already exists")
        stored = [self._insert(job) for job in jobs]
        self._wakeup.notify()
        return stored

    def _insert(self, job: Job) -> Job:
        if job.dedupe_key is not None:
            active_id = self._dedupe.get(job.dedupe_key)
            if active_id is not None:
                return self._jobs[active_id]
            self._dedupe[job.dedupe_key] = job.id
        self._seq[job.id] = next(self._counter)
        self._store(job)
        return job

    def _store(self, job: Job) -> None:
        """Save ``job`` and index it for claiming if it is claimable."""
        self._jobs[job.id] = job
        if job.status in ACTIVE_STATUSES:
            self._active.add(job.id)
        else:
            self._active.discard(job.id)
        generation = self._generation.get(job.id, 0) + 1
        self._generation[job.id] = generation
        key = job.dedupe_key
        if key is not None and job.status in TERMINAL_STATUSES and self._dedupe.get(key) == job.id:
            del self._dedupe[key]
        if lifecycle.is_due(job, float("inf")):
            seq = self._seq[job.id]
            entry = (job.not_before, seq, job.id, generation)
            heapq.heappush(self._delayed.setdefault(job.type, []), entry)

    # -- claiming ----------------------------------------------------------------------------
    async def claim(
        self,
        worker_id: str,
        *,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        wait: float = 0.0,
    ) -> Lease | None:
        self._check_open()
        types = lifecycle.claim_scope(types, lease_seconds)
        deadline = time.monotonic() + wait
        while True:
            lease = self._claim_now(worker_id, types, lease_seconds)
            if lease is not None or self._closed:
                return lease
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            next_due = self._next_due(types)
            if next_due is not None:
                remaining = min(remaining, max(0.0, next_due - self._clock()))
            await self._wakeup.wait(remaining)

    def _claim_now(
        self, worker_id: str, types: Collection[str] | None, lease_seconds: float
    ) -> Lease | None:
        now = self._clock()
        best: tuple[_ReadyEntry, str] | None = None
        for job_type in self._ready.keys() | self._delayed.keys() if types is None else types:
            self._promote(job_type, now)
            heap = self._ready.get(job_type)
            while heap and not self._valid(heap[0][3], heap[0][4]):
                heapq.heappop(heap)
            if heap and (best is None or heap[0] < best[0]):
                best = (heap[0], job_type)
        if best is None:
            return None
        heapq.heappop(self._ready[best[1]])
        job = lifecycle.claimed(self._jobs[best[0][3]], worker_id, now, lease_seconds)
        self._store(job)
        return lifecycle.lease_for(job)

    def _promote(self, job_type: str, now: float) -> None:
        delayed = self._delayed.get(job_type)
        while delayed and delayed[0][0] <= now:
            not_before, seq, job_id, generation = heapq.heappop(delayed)
            if self._valid(job_id, generation):
                entry = (-self._jobs[job_id].priority, not_before, seq, job_id, generation)
                heapq.heappush(self._ready.setdefault(job_type, []), entry)

    def _valid(self, job_id: str, generation: int) -> bool:
        job = self._jobs.get(job_id)
        return (
            job is not None
            and self._generation.get(job_id) == generation
            and lifecycle.is_due(job, float("inf"))
        )

    def _next_due(self, types: Collection[str] | None) -> float | None:
        candidates = [
            heap[0][0]
            for job_type, heap in self._delayed.items()
            if heap and (types is None or job_type in types)
        ]
        return min(candidates, default=None)

    # -- settling ----------------------------------------------------------------------------
    def _held(self, lease: Lease) -> Job:
        self._check_open()
        return lifecycle.check_lease(self._jobs.get(lease.job_id), lease, self._clock())

    async def heartbeat(
        self, lease: Lease, *, lease_seconds: float = 30.0, progress: Progress | None = None
    ) -> Lease:
        job = lifecycle.heartbeated(self._held(lease), self._clock(), lease_seconds, progress)
        self._jobs[job.id] = job  # still running: nothing to re-index
        return lifecycle.lease_for(job)

    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        job = lifecycle.completed(self._held(lease), self._clock(), result)
        self._store(job)
        return job

    async def retry(
        self, lease: Lease, *, at: float, error: JobError | None = None, count_attempt: bool = True
    ) -> Job:
        job = lifecycle.retried(self._held(lease), self._clock(), at, error, count_attempt)
        self._store(job)
        self._wakeup.notify()
        return job

    async def fail(self, lease: Lease, error: JobError) -> Job:
        job = lifecycle.dead(self._held(lease), self._clock(), error)
        self._store(job)
        return job

    async def release(self, lease: Lease) -> Job:
        job = lifecycle.released(self._held(lease), self._clock())
        self._store(job)
        self._wakeup.notify()
        return job

    async def cancel(self, job_id: str) -> Job:
        job = lifecycle.cancelled(self._require(job_id), self._clock())
        self._store(job)
        return job

    async def requeue(self, job_id: str) -> Job:
        job = self._require(job_id)
        if job.dedupe_key is not None and job.dedupe_key in self._dedupe:
            raise InvalidTransition(
                f"job {job_id} cannot be requeued: dedupe key {job.dedupe_key!r} is held by "
                f"active job {self._dedupe[job.dedupe_key]}"
            )
        job = lifecycle.requeued(job, self._clock())
        if job.dedupe_key is not None:
            self._dedupe[job.dedupe_key] = job.id
        self._store(job)
        self._wakeup.notify()
        return job

    def _require(self, job_id: str) -> Job:
        self._check_open()
        job = self._jobs.get(job_id)
        if job is None:
            raise JobNotFound(f"no job with id {job_id}")
        return job

    # -- reading and housekeeping ----------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        self._check_open()
        return self._jobs.get(job_id)

    async def list_jobs(
        self, *, status: JobStatus | None = None, type: str | None = None, limit: int = 100
    ) -> list[Job]:
        self._check_open()
        found = [
            job
            for job in self._jobs.values()
            if (status is None or job.status is status) and (type is None or job.type == type)
        ]
        found.sort(key=lambda job: (job.created_at, self._seq[job.id]))
        return found[:limit]

    async def stats(self) -> QueueStats:
        self._check_open()
        now = self._clock()
        counts: dict[str, dict[JobStatus, int]] = {}
        oldest: float | None = None
        expired = 0
        for job in self._jobs.values():
            by_status = counts.setdefault(job.type, {})
            by_status[job.status] = by_status.get(job.status, 0) + 1
            if lifecycle.is_due(job, now):
                oldest = job.not_before if oldest is None else min(oldest, job.not_before)
            expired += lifecycle.is_expired(job, now)
        age = None if oldest is None else max(0.0, now - oldest)
        return QueueStats(counts=counts, oldest_due_age=age, expired_leases=expired)

    async def reap(self) -> int:
        self._check_open()
        now = self._clock()
        reclaimed = 0
        for job in list(self._jobs.values()):
            if lifecycle.is_expired(job, now):
                self._store(lifecycle.reclaimed(job, now))
                reclaimed += 1
            elif self._past_retention(job, now):
                self._forget(job)
        if reclaimed:
            self._wakeup.notify()
        return reclaimed

    def _past_retention(self, job: Job, now: float) -> bool:
        if job.finished_at is None or job.status not in TERMINAL_STATUSES:
            return False
        ttl = self._dead_ttl if job.status is JobStatus.DEAD else self._result_ttl
        return ttl is not None and job.finished_at + ttl < now

    def _forget(self, job: Job) -> None:
        del self._jobs[job.id]
        del self._seq[job.id]
        del self._generation[job.id]

    async def close(self) -> None:
        self._closed = True
        self._wakeup.notify()

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed(f"queue {self.url} is closed")

    def active_count(self) -> int:
        """Jobs in an active state (for tests and the demo's progress bar)."""
        return len(self._active)


async def open_memory_queue(url: str, *, clock: Callable[[], float] = time.time) -> MemoryQueue:
    """``memory://``: a new, empty in-process queue."""
    return MemoryQueue(clock=clock, url=url)
