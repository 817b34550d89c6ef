"""SQLite queue (``sqlite:///path.db``): the embedded default for one machine.

Several worker processes on one host may share the file: WAL mode lets readers proceed while
one writer commits, and every state change is one ``BEGIN IMMEDIATE`` transaction, so a job is
claimed by exactly one of them. Statements live in :mod:`.store`, the schema in :mod:`.schema`,
the database thread in :mod:`.database`.

Waiting claimers cost ~0 CPU: they sleep until the earliest of (a wake-up from this process, a
wake-up from another process through :mod:`.doorbell`, the next delayed job's due time, the
``idle_recheck`` safety interval). Times come from the injected ``clock``; processes sharing a
file share the host clock.

Durability: with ``synchronous=full`` (the default) an acknowledged enqueue, completion, retry,
failure, cancel or requeue survives a process crash and power loss; claims and heartbeats skip
the fsync (see :meth:`.database.Database.submit` for why that loses nothing). With
``synchronous=normal`` every acknowledged change survives a process crash, not an OS crash.
Concurrent state changes of one queue object are committed together (group commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable, Collection, Sequence

from gaia.validator.core import lifecycle
from gaia.validator.core.errors import InvalidTransition, LeaseLost, QueueClosed
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease, Queue, QueueStats
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.sqlite import store
from gaia.validator.queues.sqlite.database import Database, Kind
from gaia.validator.queues.sqlite.doorbell import Doorbell, wake_directory
from gaia.validator.queues.sqlite.options import SqliteOptions
from gaia.validator.queues.sqlite.signal import WakeSignal

_ClaimResult = tuple[list[Job], float | None]
_SettleChange = Callable[[Job], Job]


def _revived(job: Job, now: float) -> Job:
    """Requeue applies to dead jobs only (the state machine alone would also let a running
    job go back to queued, which is release's edge, not requeue's)."""
    if job.status is not JobStatus.DEAD:
        raise InvalidTransition(f"job {job.id} is {job.status.value}; only dead jobs are requeued")
    return lifecycle.requeued(job, now)


class SqliteQueue(Queue):
    fuses_complete_and_claim = True  # one transaction (see complete_and_claim)

    def __init__(
        self, options: SqliteOptions, *, clock: Callable[[], float] = time.time, url: str = ""
    ) -> None:
        self.url = url or f"sqlite:///{options.path}"
        self.options = options
        self._clock = clock
        self._doorbell = Doorbell(wake_directory(options.path))
        self._db = Database(options, ring=self._doorbell.ring)
        self._signal = WakeSignal()
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
        batch = list(jobs)
        stored = await self._db.run(lambda db: store.enqueue(db, batch), Kind.CHANGE, ring=True)
        self._signal.notify()
        return stored

    # -- claiming ----------------------------------------------------------------------------
    async def claim_many(
        self,
        worker_id: str,
        count: int,
        *,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Up to ``count`` jobs claimed in one transaction; waits up to ``wait`` for the first."""
        self._check_open()
        chosen = lifecycle.claim_scope(types, lease_seconds, count)
        deadline = time.monotonic() + max(0.0, wait)
        if wait > 0 and not self._doorbell.listening:
            self._doorbell.listen(asyncio.get_running_loop(), self._signal.notify)
        while True:
            seen = self._signal.generation
            jobs, next_due = await self._claim_once(worker_id, chosen, lease_seconds, count)
            if jobs:
                return [lifecycle.lease_for(job) for job in jobs]
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self._closed:
                return []
            pause = min(remaining, self.options.idle_recheck)
            if next_due is not None:
                pause = min(pause, max(0.0, next_due - self._clock()))
            await self._signal.wait(seen, pause)
            if self._closed:
                return []

    async def _claim_once(
        self, worker_id: str, types: list[str] | None, lease_seconds: float, count: int
    ) -> _ClaimResult:
        now = self._clock()
        future = self._db.submit(
            lambda db: store.claim(db, worker_id, types, lease_seconds, now, count),
            Kind.CHANGE,
            abandoned=self._release_abandoned,
            durable=False,
        )
        return await future

    def _release_abandoned(self, claimed: _ClaimResult) -> None:
        """The claimer was cancelled while its claim ran: give the jobs straight back."""
        leases = [lifecycle.lease_for(job) for job in claimed[0]]
        if not leases:
            return
        now = self._clock()

        def release_all(db: sqlite3.Connection) -> None:
            for lease in leases:
                with contextlib.suppress(LeaseLost):  # already cancelled: nothing to give back
                    store.settle(db, lease, now, lambda held: lifecycle.released(held, now))

        with contextlib.suppress(QueueClosed):  # if closed, the leases expire and are reaped
            self._db.submit(release_all, Kind.CHANGE, ring=True)

    # -- settling ------------------------------------------------------------------------------
    async def _settle(
        self, lease: Lease, now: float, change: _SettleChange, ring: bool, durable: bool = True
    ) -> Job:
        return await self._db.run(
            lambda db: store.settle(db, lease, now, change),
            Kind.CHANGE,
            ring=ring,
            durable=durable,
        )

    async def heartbeat(
        self, lease: Lease, *, lease_seconds: float = 30.0, progress: Progress | None = None
    ) -> Lease:
        now = self._now()
        job = await self._settle(
            lease,
            now,
            lambda held: lifecycle.heartbeated(held, now, lease_seconds, progress),
            False,
        )
        return lifecycle.lease_for(job)

    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        now = self._now()
        return await self._settle(
            lease, now, lambda held: lifecycle.completed(held, now, result), False
        )

    async def complete_and_claim(
        self,
        lease: Lease,
        result: JSONValue = None,
        *,
        count: int = 1,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
    ) -> tuple[Job, list[Lease]]:
        """Complete, then claim up to ``count`` due jobs for the same worker, in one transaction
        (the claims are rolled back with the completion if its lease was lost)."""
        self._check_open()
        chosen = lifecycle.claim_scope(types, lease_seconds, count)
        now = self._now()

        def complete_then_claim(db: sqlite3.Connection) -> tuple[Job, list[Job]]:
            job = store.settle(db, lease, now, lambda held: lifecycle.completed(held, now, result))
            claimed, _ = store.claim(db, lease.worker_id, chosen, lease_seconds, now, count)
            return job, claimed

        job, claimed = await self._db.submit(
            complete_then_claim,
            Kind.CHANGE,
            abandoned=lambda done: self._release_abandoned((done[1], None)),
        )
        return job, [lifecycle.lease_for(claimed_job) for claimed_job in claimed]

    async def retry(
        self, lease: Lease, *, at: float, error: JobError | None = None, count_attempt: bool = True
    ) -> Job:
        now = self._now()
        job = await self._settle(
            lease, now, lambda held: lifecycle.retried(held, now, at, error, count_attempt), True
        )
        self._signal.notify()
        return job

    async def fail(self, lease: Lease, error: JobError) -> Job:
        now = self._now()
        return await self._settle(lease, now, lambda held: lifecycle.dead(held, now, error), False)

    async def release(self, lease: Lease) -> Job:
        now = self._now()
        job = await self._settle(lease, now, lambda held: lifecycle.released(held, now), True)
        self._signal.notify()
        return job

    async def cancel(self, job_id: str) -> Job:
        now = self._now()
        return await self._db.run(
            lambda db: store.change_job(db, job_id, lambda job: lifecycle.cancelled(job, now)),
            Kind.CHANGE,
        )

    async def requeue(self, job_id: str) -> Job:
        now = self._now()
        job = await self._db.run(
            lambda db: store.change_job(db, job_id, lambda dead: _revived(dead, now)),
            Kind.CHANGE,
            ring=True,
        )
        self._signal.notify()
        return job

    # -- reading and housekeeping ----------------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        self._check_open()
        return await self._db.run(lambda db: store.get(db, job_id), Kind.READ)

    async def list_jobs(
        self, *, status: JobStatus | None = None, type: str | None = None, limit: int = 100
    ) -> list[Job]:
        self._check_open()
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        return await self._db.run(lambda db: store.list_jobs(db, status, type, limit), Kind.READ)

    async def stats(self) -> QueueStats:
        now = self._now()
        counts, oldest, expired = await self._db.run(lambda db: store.stats(db, now), Kind.READ)
        age = None if oldest is None else max(0.0, now - oldest)
        return QueueStats(counts=counts, oldest_due_age=age, expired_leases=expired)

    async def reap(self) -> int:
        now = self._now()
        reclaimed = await self._db.run(lambda db: self._reap_then_ring(db, now), Kind.OWN)
        if reclaimed:
            self._signal.notify()
        return reclaimed

    def _reap_then_ring(self, connection: sqlite3.Connection, now: float) -> int:
        """On the database thread: reap, then wake other processes if jobs came back."""
        options = self.options
        reclaimed = store.reap(connection, now, options.result_ttl, options.dead_ttl)
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
