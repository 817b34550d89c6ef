"""PostgreSQL queue (``postgresql://``): the queue contract for many processes and machines.

Each operation is one statement (see :mod:`.statements`) on a pooled asyncpg connection, retried
on a fresh connection with backoff when the server goes away (:mod:`.connection`). Waiting
claimers sleep on LISTEN/NOTIFY wake-ups (:mod:`.listener`) and on the next delayed job's due
time; nothing polls while idle.

Time is the injected ``clock`` (POSIX seconds), never the server's ``now()``: every machine sharing
a queue must keep its clock NTP-synchronised, with skew well below the lease length.

Delivery is at least once. If the connection drops after a claim committed but before its reply
arrived, that job stays running under a lease nobody holds until the reaper reclaims it (counted
as an attempt, like a crash). An enqueue or settle retried after a lost acknowledgement is
recognised and not applied twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Collection, Sequence
from typing import TypeAlias

import asyncpg

from gaia.validator.core import lifecycle
from gaia.validator.core.codec import progress_to_record
from gaia.validator.core.errors import DuplicateJob, InvalidTransition, JobNotFound, QueueClosed
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease, Queue, QueueStats
from gaia.validator.core.status import JobStatus, check_transition
from gaia.validator.queues.postgres.claiming import Claimer
from gaia.validator.queues.postgres.completing import Completer
from gaia.validator.queues.postgres.connection import Connector
from gaia.validator.queues.postgres.fusing import Fuser
from gaia.validator.queues.postgres.listener import Listener
from gaia.validator.queues.postgres.migrations import migrate
from gaia.validator.queues.postgres.options import ParsedURL, parse_postgres_url
from gaia.validator.queues.postgres.rows import (
    error_value,
    insert_arguments,
    insert_arrays,
    job_from_row,
)
from gaia.validator.queues.postgres.statements import Statements, statements_for

Row: TypeAlias = asyncpg.Record

MIN_RECHECK = 0.005
"""Shortest wait when a due job exists but another claimer holds its row lock."""
POLL_WHILE_DISCONNECTED = 1.0
"""Longest wait while the LISTEN connection is down (no wake-ups can arrive)."""
PURGE_CHUNK = 10_000
CLOSE_GRACE = 5.0
"""Seconds close() waits for batches in flight before closing the pool under them."""
EXHAUSTED_ERROR = error_value(JobError("no attempt left", kind=lifecycle.EXHAUSTED))


class PostgresQueue(Queue):
    """Open with :func:`open_postgres_queue`; see the module docstring for the guarantees."""

    fuses_complete_and_claim = True  # one statement per batch (see complete_and_claim)

    def __init__(self, parsed: ParsedURL, *, clock: Callable[[], float] = time.time) -> None:
        self.url = parsed.display
        self.dsn = parsed.dsn
        """The driver's connection string (with any password): for tools and tests."""
        self.options = parsed.options
        self._clock = clock
        self._connector = Connector(parsed)
        self._sql: Statements = statements_for(parsed.options.schema)
        self._listener = Listener(self._connector.connect, parsed.options.channel)
        self._claimer = Claimer(self._connector, self._sql, clock, self.release)
        self._completer = Completer(
            self._connector, self._sql, clock, self._complete_one, self._read_back
        )
        self._fuser = Fuser(self._connector, self._sql, clock, self._completer, self._claimer)
        self._closed = False

    async def open(self) -> None:
        """Migrate the schema (one dedicated connection, one transaction) and open the pool."""
        connection = await self._connector.connect_with_retry()
        try:
            await migrate(connection, self.options.schema, self.options.channel)
        finally:
            await connection.close()
        await self._connector.open()

    # -- writing ---------------------------------------------------------------------------
    async def enqueue(self, job: Job) -> Job:
        return (await self.enqueue_many([job]))[0]

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        self._check_open()
        lifecycle.check_enqueueable(jobs)
        if not jobs:
            return []
        return await self._connector.run(lambda conn, _: self._store(conn, jobs))

    async def _store(self, conn: asyncpg.Connection, jobs: Sequence[Job]) -> list[Job]:
        """Insert what is new; for the rest, return the stored job or the active duplicate.

        Safe to run again after a lost acknowledgement: a job already stored under its id with
        the same content is that earlier attempt's work, not an error. Jobs with a dedupe key go
        through ``INSERT ... ON CONFLICT DO NOTHING`` (the active-dedupe index is the arbiter,
        so concurrent producers cannot both insert); a batch without keys tries a plain INSERT.
        """
        if all(job.dedupe_key is None for job in jobs):
            try:
                await self._insert_new(conn, jobs)
                return list(jobs)
            except asyncpg.UniqueViolationError:
                pass  # an id is already stored: sort it out below, row by row
        if len(jobs) == 1:  # one row: stored or not, never half a batch
            return await self._store_row_by_row(conn, jobs)
        async with conn.transaction():  # a refused duplicate id stores nothing of the batch
            return await self._store_row_by_row(conn, jobs)

    async def _store_row_by_row(self, conn: asyncpg.Connection, jobs: Sequence[Job]) -> list[Job]:
        stored: list[Job | None] = [None] * len(jobs)
        pending = list(range(len(jobs)))
        while pending:
            batch = [jobs[i] for i in pending]
            if len(batch) == 1:
                inserted = {await conn.fetchval(self._sql.insert_one, *insert_arguments(batch[0]))}
            else:
                inserted = set(await conn.fetchval(self._sql.insert_many, *insert_arrays(batch)))
            missing = []
            for i in pending:
                if jobs[i].id in inserted:
                    stored[i] = jobs[i]
                else:
                    missing.append(i)
            pending = await self._resolve_duplicates(conn, jobs, missing, stored)
        return [job for job in stored if job is not None]

    async def _insert_new(self, conn: asyncpg.Connection, jobs: Sequence[Job]) -> None:
        """Plain INSERT (no dedupe key anywhere, so only an id can clash): cheaper for the
        server than speculative insertion, and all or nothing."""
        if len(jobs) == 1:
            await conn.execute(self._sql.insert_new_one, *insert_arguments(jobs[0]))
        else:
            await conn.execute(self._sql.insert_new_many, *insert_arrays(jobs))

    async def _resolve_duplicates(
        self,
        conn: asyncpg.Connection,
        jobs: Sequence[Job],
        missing: list[int],
        stored: list[Job | None],
    ) -> list[int]:
        """Fill ``stored`` for inputs the insert skipped; return those to insert again (their
        dedupe key's holder finished between the insert and this lookup)."""
        if not missing:
            return []
        ids = [jobs[i].id for i in missing]
        keys = [jobs[i].dedupe_key for i in missing if jobs[i].dedupe_key is not None]
        rows = await conn.fetch(self._sql.find_stored, ids, keys)
        by_id = {row["id"]: row for row in rows}
        by_key = {
            row["dedupe_key"]: row
            for row in rows
            if row["status"] in ("queued", "running", "retry_scheduled")
        }
        again = []
        for i in missing:
            job = jobs[i]
            same_id = by_id.get(job.id)
            if same_id is not None:
                existing = job_from_row(same_id)
                if (existing.type, existing.created_at, existing.payload) != (
                    job.type,
                    job.created_at,
                    job.payload,
                ):
                    raise DuplicateJob(f"a different job with id {job.id} already exists")
                stored[i] = existing
            elif job.dedupe_key is not None and job.dedupe_key in by_key:
                stored[i] = job_from_row(by_key[job.dedupe_key])
            else:
                again.append(i)
        return again

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
        """Up to ``count`` jobs, best first, in one claim statement (shared with concurrent
        claims of this process); waits up to ``wait`` s for the first."""
        return await self._claim_waiting(worker_id, count, types, lease_seconds, wait)

    async def _claim_waiting(
        self,
        worker_id: str,
        count: int,
        types: Collection[str] | None,
        lease_seconds: float,
        wait: float,
    ) -> list[Lease]:
        self._check_open()
        chosen = lifecycle.claim_scope(types, lease_seconds, count)
        wanted = None if chosen is None else tuple(chosen)
        signal = self._listener.signal
        if wait > 0:
            self._listener.start()
        deadline = time.monotonic() + wait
        while not self._closed:
            since = signal.epoch
            leases = await self._claimer.claim_now(worker_id, wanted, lease_seconds, count)
            if leases or self._closed:
                return leases
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            next_due = await self._next_due(wanted)
            if next_due is not None:
                remaining = min(remaining, max(MIN_RECHECK, next_due - self._clock()))
            if not self._listener.connected:
                remaining = min(remaining, POLL_WHILE_DISCONNECTED)
            await signal.wait(since, remaining)
        return []

    async def _next_due(self, types: tuple[str, ...] | None) -> float | None:
        if types is None:
            due = await self._connector.run(lambda c, _: c.fetchval(self._sql.next_due_any))
        else:
            due = await self._connector.run(
                lambda c, _: c.fetchval(self._sql.next_due_types, list(types))
            )
        return None if due is None else float(due)

    # -- settling ----------------------------------------------------------------------------
    async def _settle(
        self, lease: Lease, sql: str, args: Sequence[object], outcomes: frozenset[JobStatus]
    ) -> Job:
        """Run a fenced UPDATE for ``lease``; raise LeaseLost if the lease no longer holds.

        ``outcomes`` are the statuses the update can leave the job in: on a retried attempt, a
        job already there under the same token means the first attempt committed.
        """
        self._check_open()

        async def attempt(conn: asyncpg.Connection, number: int) -> Job:
            row = await conn.fetchrow(sql, lease.job_id, lease.token, *args)
            if row is not None:
                return job_from_row(row)
            stored = await conn.fetchrow(self._sql.get, lease.job_id)
            job = None if stored is None else job_from_row(stored)
            if (
                number > 1
                and job is not None
                and job.lease_token == lease.token
                and job.status in outcomes
            ):
                return job
            lifecycle.check_lease(job, lease, self._clock())
            raise AssertionError(f"fenced update of job {lease.job_id} matched no row")

        return await self._connector.run(attempt)

    async def heartbeat(
        self, lease: Lease, *, lease_seconds: float = 30.0, progress: Progress | None = None
    ) -> Lease:
        value = progress_to_record(progress)
        job = await self._settle(
            lease,
            self._sql.heartbeat,
            (self._clock(), lease_seconds, value),
            frozenset({JobStatus.RUNNING}),
        )
        return lifecycle.lease_for(job)

    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        self._check_open()
        return await self._completer.complete(lease, result)

    async def complete_and_claim(
        self,
        lease: Lease,
        result: JSONValue = None,
        *,
        count: int = 1,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
    ) -> tuple[Job, list[Lease]]:
        """``complete(lease, result)``, then up to ``count`` due jobs for the same worker, best
        first, in ONE statement (shared with concurrent calls): one round trip and one commit
        per batch instead of two. Does not wait: no job due, no lease. If the completion raises
        (LeaseLost), nothing stays claimed for this call."""
        self._check_open()
        chosen = lifecycle.claim_scope(types, lease_seconds, count)
        wanted = None if chosen is None else tuple(chosen)
        return await self._fuser.complete_and_claim(lease, result, wanted, lease_seconds, count)

    async def _complete_one(self, lease: Lease, result: JSONValue) -> Job:
        return await self._settle(
            lease, self._sql.complete, (result, self._clock()), frozenset({JobStatus.SUCCEEDED})
        )

    async def retry(
        self, lease: Lease, *, at: float, error: JobError | None = None, count_attempt: bool = True
    ) -> Job:
        args = (error_value(error), self._clock(), count_attempt, at, EXHAUSTED_ERROR)
        outcomes = frozenset({JobStatus.RETRY_SCHEDULED, JobStatus.DEAD})
        return await self._settle(lease, self._sql.retry, args, outcomes)

    async def fail(self, lease: Lease, error: JobError) -> Job:
        return await self._settle(
            lease, self._sql.fail, (error_value(error), self._clock()), frozenset({JobStatus.DEAD})
        )

    async def release(self, lease: Lease) -> Job:
        return await self._settle(
            lease, self._sql.release, (self._clock(),), frozenset({JobStatus.QUEUED})
        )

    # -- by id -------------------------------------------------------------------------------
    async def cancel(self, job_id: str) -> Job:
        return await self._change(
            job_id, self._sql.cancel, JobStatus.CANCELLED, "queued, running or retry_scheduled"
        )

    async def requeue(self, job_id: str) -> Job:
        try:
            return await self._change(job_id, self._sql.requeue, JobStatus.QUEUED, "dead")
        except asyncpg.UniqueViolationError:
            job = await self.get(job_id)
            key = None if job is None else job.dedupe_key
            holder = await self._connector.run(
                lambda conn, _: conn.fetchval(self._sql.dedupe_holder, key)
            )
            raise InvalidTransition(
                f"job {job_id} cannot be requeued: dedupe key {key!r} is held by "
                f"active job {holder}"
            ) from None

    async def _change(
        self, job_id: str, sql: str, target: JobStatus, allowed_from: str
    ) -> Job:
        """Apply an unfenced transition by id; explain a refusal from the stored status."""
        self._check_open()

        async def attempt(conn: asyncpg.Connection, number: int) -> Job:
            row = await conn.fetchrow(sql, job_id, self._clock())
            if row is not None:
                return job_from_row(row)
            stored = await conn.fetchrow(self._sql.get, job_id)
            if stored is None:
                raise JobNotFound(f"no job with id {job_id}")
            job = job_from_row(stored)
            if number > 1 and job.status is target:
                return job  # the first attempt committed; its reply was lost
            check_transition(job.status, target)
            raise InvalidTransition(
                f"job {job_id} is {job.status.value}: only a {allowed_from} job can become "
                f"{target.value} this way"
            )

        return await self._connector.run(attempt)

    # -- reading and housekeeping ----------------------------------------------------------
    async def _read_back(self, job_id: str) -> Job:
        job = await self.get(job_id)
        if job is None:
            raise JobNotFound(f"job {job_id} vanished right after it was completed")
        return job

    async def get(self, job_id: str) -> Job | None:
        self._check_open()
        row = await self._connector.run(lambda conn, _: conn.fetchrow(self._sql.get, job_id))
        return None if row is None else job_from_row(row)

    async def list_jobs(
        self, *, status: JobStatus | None = None, type: str | None = None, limit: int = 100
    ) -> list[Job]:
        self._check_open()
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        wanted = None if status is None else status.value
        rows = await self._connector.run(
            lambda conn, _: conn.fetch(self._sql.list_jobs, wanted, type, limit)
        )
        return [job_from_row(row) for row in rows]

    async def stats(self) -> QueueStats:
        self._check_open()
        now = self._clock()

        async def read(conn: asyncpg.Connection, _: int) -> tuple[list[Row], Row]:
            counts = await conn.fetch(self._sql.stats_counts)
            ages = await conn.fetchrow(self._sql.stats_ages, now)
            return counts, ages

        rows, ages = await self._connector.run(read)
        counts: dict[str, dict[JobStatus, int]] = {}
        for row in rows:
            counts.setdefault(row["type"], {})[JobStatus(row["status"])] = row["n"]
        oldest = ages["oldest_due"]
        age = None if oldest is None else max(0.0, now - oldest)
        return QueueStats(counts=counts, oldest_due_age=age, expired_leases=ages["expired"])

    async def reap(self) -> int:
        self._check_open()
        now = self._clock()
        reclaimed: int = await self._connector.run(
            lambda conn, _: conn.fetchval(self._sql.reap_expired, now)
        )
        result_cutoff = now - self.options.result_ttl
        dead_ttl = self.options.dead_ttl
        dead_cutoff = float("-inf") if dead_ttl is None else now - dead_ttl
        while True:
            purged: int = await self._connector.run(
                lambda conn, _: conn.fetchval(
                    self._sql.purge_finished, result_cutoff, dead_cutoff, PURGE_CHUNK
                )
            )
            if purged < PURGE_CHUNK:
                return reclaimed

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._listener.close()
        # Let claims and completions in flight finish, unless the server is away (they would
        # retry until reconnect_timeout): then the pool closes under them and they fail.
        in_flight = (
            self._claimer.in_flight() + self._completer.in_flight() + self._fuser.in_flight()
        )
        if in_flight:
            await asyncio.wait(in_flight, timeout=CLOSE_GRACE)
        await self._connector.close()

    def _check_open(self) -> None:
        if self._closed:
            raise QueueClosed(f"queue {self.url} is closed")


async def open_postgres_queue(
    url: str, *, clock: Callable[[], float] = time.time
) -> PostgresQueue:
    """Open the queue at ``url`` (``postgresql://`` or ``postgres://``), migrating its schema.

    Raises ValueError for a bad URL option, and DatabaseUnavailable if the server cannot be
    reached within ``reconnect_timeout``.
    """
    queue = PostgresQueue(parse_postgres_url(url), clock=clock)
    await queue.open()
    return queue
