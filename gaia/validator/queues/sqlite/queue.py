"""SQLite queue (``sqlite:///path.db``): the embedded default for one machine.

Several worker processes on one host may share the file: WAL mode lets readers proceed while
one writer commits, and every state change is one ``BEGIN IMMEDIATE`` transaction, so a job is
claimed by exactly one of them. Statements live in :mod:`.store`, the schema in :mod:`.schema`,
the database thread in :mod:`.database`.

Waiting claimers cost ~0 CPU: they sleep until the earliest of (a wake-up from this process, a
wake-up from another process through :mod:`.doorbell`, the next delayed job's due time, the
``idle_recheck`` safety interval). Times come from the injected ``clock``; processes sharing a
file share the host clock.

Durability: with ``synchronous=full`` (the default) an acknowledged enqueue or state change
survives a process crash and power loss; ``synchronous=normal`` survives a process crash only.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence
from functools import partial
from typing import ParamSpec, TypeVar

from gaia.validator.core import lifecycle
from gaia.validator.core.errors import InvalidTransition, QueueClosed
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease, Queue, QueueStats
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.sqlite import store
from gaia.validator.queues.sqlite.database import Database
from gaia.validator.queues.sqlite.doorbell import Doorbell, wake_directory
from gaia.validator.queues.sqlite.options import SqliteOptions
from gaia.validator.queues.sqlite.signal import WakeSignal

_ClaimResult = tuple[Job | None, float | None]
P = ParamSpec("P")
T = TypeVar("T")


def _revived(job: Job, *, now: float) -> Job:
    """Requeue applies to dead jobs only (the state machine alone would also let a running
    job go back to queued, which is release's edge, not requeue's)."""
    if job.status is not JobStatus.DEAD:
        raise InvalidTransition(f"job {job.id} is {job.status.value}; only dead jobs are requeued")
    return lifecycle.requeued(job, now)


class SqliteQueue(Queue):
    def __init__(
        self, options: SqliteOptions, *, clock: Callable[[], float] = time.time, url: str = ""
    ) -> None:
        self.url = url or f"sqlite:///{options.path}"
        self.options = options
        self._clock = clock
        self._db = Database(options)
        self._signal = WakeSignal()
        self._doorbell = Doorbell(wake_directory(options.path))
        self._closed = False

    async def open(self) -> None:
        """Connect, switch to WAL and apply pending migrations (idempotent)."""
        await self._db.open()

    # -- writing ----------------------------------------------------------------------------
    async def enqueue(self, job: Job) -> Job:
        return (await self.enqueue_many([job]))[0]

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        self._check_open()
        if not jobs:
            return []
        stored = await self._db.run(self._ringing(store.enqueue), list(jobs))
        self._signal.notify()
        return stored

    def _ringing(self, fn: Callable[P, T]) -> Callable[P, T]:
        """``fn`` followed, on the database thread after its commit, by a cross-process ring."""
        doorbell = self._doorbell

        def run_then_ring(*args: P.args, **kwargs: P.kwargs) -> T:
            result = fn(*args, **kwargs)
            doorbell.ring()
            return result

        return run_then_ring

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
        if lease_seconds <= 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        chosen = None if types is None else sorted(set(types))
        if chosen == []:
            raise ValueError("types must name at least one job type (or be None for all)")
        deadline = time.monotonic() + max(0.0, wait)
        if wait > 0 and not self._doorbell.listening:
            self._doorbell.listen(asyncio.get_running_loop(), self._signal.notify)
        while True:
            seen = self._signal.generation
            job, next_due = await self._claim_once(worker_id, chosen, lease_seconds)
            if job is not None:
                return lifecycle.lease_for(job)
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return None
            pause = min(remaining, self.options.idle_recheck)
            if next_due is not None:
                pause = min(pause, max(0.0, next_due - self._clock()))
            await self._signal.wait(seen, pause)
            if self._closed:
                return None

    async def _claim_once(
        self, worker_id: str, types: list[str] | None, lease_seconds: float
    ) -> _ClaimResult:
        now = self._clock()
        future = self._db.submit(store.claim, worker_id, types, lease_seconds, now)
        try:
            return await asyncio.shield(asyncio.wrap_future(future))
        except asyncio.CancelledError:
            # The caller gave up; a claim already made on the thread must not be stranded.
            future.add_done_callback(self._release_abandoned)
            raise

    def _release_abandoned(self, future: concurrent.futures.Future[_ClaimResult]) -> None:
        if future.cancelled() or future.exception() is not None:
            return
        job = future.result()[0]
        if job is None:
            return
        lease = lifecycle.lease_for(job)
        release = self._ringing(store.settle)
        now = self._clock()
        with contextlib.suppress(QueueClosed):  # if closed, the lease expires and is reaped
            self._db.submit(release, lease, now, lambda held: lifecycle.released(held, now))

    # -- settling ------------------------------------------------------------------------------
    async def heartbeat(
        self, lease: Lease, *, lease_seconds: float = 30.0, progress: Progress | None = None
    ) -> Lease:
        now = self._now()
        job = await self._db.run(
            store.settle,
            lease,
            now,
            lambda held: lifecycle.heartbeated(held, now, lease_seconds, progress),
        )
        return lifecycle.lease_for(job)

    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        now = self._now()
        return await self._db.run(
            store.settle, lease, now, lambda held: lifecycle.completed(held, now, result)
        )

    async def retry(
        self, lease: Lease, *, at: float, error: JobError | None = None, count_attempt: bool = True
    ) -> Job:
        now = self._now()
        job = await self._db.run(
            self._ringing(store.settle),
            lease,
            now,
            lambda held: lifecycle.retried(held, now, at, error, count_attempt),
        )
        self._signal.notify()
        return job

    async def fail(self, lease: Lease, error: JobError) -> Job:
        now = self._now()
        return await self._db.run(
            store.settle, lease, now, lambda held: lifecycle.dead(held, now, error)
        )

    async def release(self, lease: Lease) -> Job:
        now = self._now()
        job = await self._db.run(
            self._ringing(store.settle), lease, now, lambda held: lifecycle.released(held, now)
        )
        self._signal.notify()
        return job

    async def cancel(self, job_id: str) -> Job:
        now = self._now()
        return await self._db.run(
            store.change_job, job_id, lambda job: lifecycle.cancelled(job, now)
        )

    async def requeue(self, job_id: str) -> Job:
        now = self._now()
        job = await self._db.run(
            self._ringing(store.change_job), job_id, partial(_revived, now=now)
        )
        self._signal.notify()
        return job

    # -- reading and housekeeping ----------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        self._check_open()
        return await self._db.run(store.get, job_id)

    async def list_jobs(
        self, *, status: JobStatus | None = None, type: str | None = None, limit: int = 100
    ) -> list[Job]:
        self._check_open()
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return await self._db.run(store.list_jobs, status, type, limit)

    async def stats(self) -> QueueStats:
        now = self._now()
        counts, oldest, expired = await self._db.run(store.stats, now)
        age = None if oldest is None else max(0.0, now - oldest)
        return QueueStats(counts=counts, oldest_due_age=age, expired_leases=expired)

    async def reap(self) -> int:
        now = self._now()
        options = self.options
        reclaimed = await self._db.run(
            self._reap_then_ring, now, options.result_ttl, options.dead_ttl
        )
        if reclaimed:
            self._signal.notify()
        return reclaimed

    def _reap_then_ring(
        self, connection: sqlite3.Connection, now: float, result_ttl: float, dead_ttl: float | None
    ) -> int:
        reclaimed = store.reap(connection, now, result_ttl, dead_ttl)
        if reclaimed:
            self._doorbell.ring()
        return reclaimed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._signal.notify()
        self._doorbell.close()
        await self._db.close()

    def _now(self) -> float:
        self._check_open()
        return self._clock()

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed(f"queue {self.url} is closed")
