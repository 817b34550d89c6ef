"""RedisQueue: the Queue contract on Redis, one atomic Lua script per lifecycle step."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection, Iterator, Sequence

from gaia.validator.core import lifecycle
from gaia.validator.core.errors import CorruptJob, InvalidTransition, LeaseLost
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease, Queue, QueueStats
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.redis.claiming import ClaimBatcher, split_claim_reply
from gaia.validator.queues.redis.connection import RedisLink
from gaia.validator.queues.redis.options import RedisOptions, expire_seconds
from gaia.validator.queues.redis.pipelining import Reply
from gaia.validator.queues.redis.records import (
    decode_changes,
    decode_hash,
    enqueue_fields,
    error_text,
    json_text,
    number_text,
    pairs,
)

log = logging.getLogger(__name__)

ENQUEUE_CHUNK = 250  # jobs per enqueue script call: the next chunk is packed while one runs
REAP_LIMIT = 1_000  # expired leases / purges handled per set and reap script call
STATUS_ORDER = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.RETRY_SCHEDULED,
    JobStatus.DEAD,
    JobStatus.CANCELLED,
)  # the order of STATUSES in the Lua prelude
_EXHAUSTED = error_text(JobError("no attempt left", kind=lifecycle.EXHAUSTED))


class RedisQueue(Queue):
    """A queue whose jobs live in one Redis database, under keys namespaced by queue name."""

    def __init__(
        self, link: RedisLink, options: RedisOptions, *, clock: Callable[[], float], url: str
    ) -> None:
        self.url = url
        self.options = options
        self.keys = options.keys
        self._link = link
        self._clock = clock
        self._claims = ClaimBatcher(self._claim_script)
        dead_ttl = options.dead_ttl
        self._retention = [
            (options.result_ttl, str(expire_seconds(options.result_ttl))),
            (dead_ttl, "" if dead_ttl is None else str(expire_seconds(dead_ttl))),
        ]

    # -- calling scripts -------------------------------------------------------------------
    async def _run(self, name: str, *arguments: str) -> Reply:
        return await self._run_at(name, lambda now: arguments)

    async def _run_at(self, name: str, arguments: Callable[[float], Sequence[str]]) -> Reply:
        """Run script ``name``; ``arguments(now)`` gives its own arguments for the call's time."""

        def with_header(resent: bool) -> list[str]:
            now = self._clock()
            return [*self._header(resent, now), *arguments(now)]

        return await self._link.script(name, with_header)

    def _header(self, resent: bool, now: float | None = None) -> list[str]:
        """The arguments every script starts with (see :mod:`.scripts`)."""
        now = self._clock() if now is None else now
        header = [self.keys.prefix, number_text(now), "1" if resent else "0"]
        for ttl, expire in self._retention:
            header += ["", ""] if ttl is None else [number_text(now + ttl), expire]
        return header

    async def _job(self, name: str, *arguments: str) -> Job:
        reply = await self._run(name, *arguments)
        assert isinstance(reply, list)
        return decode_hash(pairs(reply))

    async def _settle(self, name: str, lease: Lease, *arguments: str) -> Job:
        reply = await self._run(name, lease.job_id, str(lease.token), *arguments)
        assert isinstance(reply, list)
        return decode_changes(lease.job, reply)

    # -- writing ---------------------------------------------------------------------------
    async def enqueue(self, job: Job) -> Job:
        return (await self.enqueue_many([job]))[0]

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        """Store ``jobs`` in chunks of ENQUEUE_CHUNK, one script call each, streamed in order.

        Ids already stored refuse the whole batch before anything is written (checked up front
        for a batch of several chunks, and again by each chunk's script).
        """
        self._link.check_open()
        seen: set[str] = set()
        for job in jobs:
            if job.status is not JobStatus.QUEUED:
                raise InvalidTransition(f"only queued jobs can be enqueued, got {job.status.value}")
            if job.id in seen:
                raise ValueError(f"job id {job.id} appears twice in one batch")
            seen.add(job.id)
        if not jobs:
            return []

        def fields(chunk: Sequence[Job]) -> list[str]:
            arguments = [str(len(chunk))]
            for job in chunk:
                arguments += enqueue_fields(job)
            return arguments

        def calls(resent: bool) -> Iterator[list[str]]:
            for start in range(0, len(jobs), ENQUEUE_CHUNK):
                yield [*self._header(resent), *fields(jobs[start : start + ENQUEUE_CHUNK])]

        if len(jobs) <= ENQUEUE_CHUNK:  # one call: it may share a pipeline with others
            replies = [await self._run("enqueue", *fields(jobs))]
        else:
            await self._refuse_existing(jobs)
            replies = await self._link.script_stream("enqueue", calls)
        stored: list[Job] = []
        for reply in replies:
            assert isinstance(reply, list)
            for entry in reply:
                stored.append(jobs[len(stored)] if entry == 0 else decode_hash(pairs(entry)))
        assert len(stored) == len(jobs)
        return stored

    async def _refuse_existing(self, jobs: Sequence[Job]) -> None:
        keys = [self.keys.job(job.id) for job in jobs]
        if await self._link.command("EXISTS", *keys):
            for job, key in zip(jobs, keys, strict=True):
                if await self._link.command("EXISTS", key):
                    raise ValueError(f"a job with id {job.id} already exists")

    # -- claiming --------------------------------------------------------------------------
    async def claim(
        self,
        worker_id: str,
        *,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        wait: float = 0.0,
    ) -> Lease | None:
        leases = await self.claim_many(
            worker_id, 1, types=types, lease_seconds=lease_seconds, wait=wait
        )
        return leases[0] if leases else None

    async def claim_many(
        self,
        worker_id: str,
        count: int,
        *,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Claim up to ``count`` due jobs in claim order in one script call (Redis only).

        Waits up to ``wait`` seconds for the first; returns as soon as any could be claimed.
        """
        self._link.check_open()
        if not worker_id:
            raise ValueError("worker_id must be a non-empty string")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        subscribed = None if types is None else sorted(set(types))
        if subscribed is not None and not subscribed:
            raise ValueError("types must name at least one job type, or be None for every type")
        deadline = time.monotonic() + max(0.0, wait)
        while True:
            leases, next_due = await self._claim_now(
                worker_id, count, subscribed or [], lease_seconds
            )
            if leases or self._link.closed:
                return leases
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            if next_due is not None:
                remaining = min(remaining, max(0.0, next_due - self._clock()))
            if remaining > 0:
                await self._link.wait(self._wake_keys(subscribed), remaining)
            if self._link.closed:
                return []  # closed while waiting: the claim ends empty

    def _wake_keys(self, types: list[str] | None) -> list[str]:
        if types is None:
            return [self.keys.wake(None)]
        return [self.keys.wake(job_type) for job_type in types]

    async def _claim_now(
        self, worker_id: str, count: int, types: list[str], lease_seconds: float
    ) -> tuple[list[Lease], float | None]:
        """Leases claimed now, and the due time of the next delayed job when none was.

        A single claim joins the other single claims of this event-loop turn (see
        :mod:`.claiming`); a claim of several jobs is a script call of its own.
        """
        while True:
            if count == 1:
                mine, next_due = await self._claims.claim(worker_id, types, lease_seconds)
                claimed = [] if mine is None else [mine]
            else:
                reply = await self._claim_script([worker_id] * count, types, lease_seconds)
                next_due, claimed = split_claim_reply(reply)
            leases: list[Lease] = []
            for job_id, flat in claimed:
                lease = await self._lease_or_bury(job_id, pairs(flat))
                if lease is not None:
                    leases.append(lease)
            if leases or not claimed:
                return leases, next_due
            # Every claimed record was undecodable and is now dead-lettered: try again.

    async def _claim_script(
        self, workers: Sequence[str], types: Sequence[str], lease_seconds: float
    ) -> Reply:
        return await self._run_at(
            "claim",
            lambda now: [number_text(now + lease_seconds), str(len(workers)), *workers, *types],
        )

    async def _lease_or_bury(self, job_id: str, fields: dict[bytes, bytes]) -> Lease | None:
        try:
            job = decode_hash(fields)
            if job.id != job_id:
                raise CorruptJob(f"job record under id {job_id} carries id {job.id!r}")
        except CorruptJob as exc:
            message = str(exc)
            if "invalid" not in message.lower():
                message = f"job record is invalid: {message}"
            log.error("redis queue %s: dead-lettering job %s: %s", self.url, job_id, message)
            token = fields.get(b"lease_token", b"0").decode()
            with contextlib.suppress(LeaseLost):  # reclaimed or cancelled meanwhile
                await self._run("bury", job_id, token, message)
            return None
        return lifecycle.lease_for(job)

    # -- settling --------------------------------------------------------------------------
    async def heartbeat(
        self, lease: Lease, *, lease_seconds: float = 30.0, progress: Progress | None = None
    ) -> Lease:
        if not lease_seconds > 0:
            raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
        shown = (
            ""
            if progress is None
            else json_text(
                {"done": progress.done, "total": progress.total, "message": progress.message}
            )
        )
        job = await self._run_at(
            "heartbeat",
            lambda now: [lease.job_id, str(lease.token), number_text(now + lease_seconds), shown],
        )
        assert isinstance(job, list)
        return lifecycle.lease_for(decode_changes(lease.job, job))

    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        return await self._settle("complete", lease, json_text(result))

    async def retry(
        self, lease: Lease, *, at: float, error: JobError | None = None, count_attempt: bool = True
    ) -> Job:
        return await self._settle(
            "retry",
            lease,
            number_text(at),
            error_text(error),
            "1" if count_attempt else "0",
            _EXHAUSTED,
        )

    async def fail(self, lease: Lease, error: JobError) -> Job:
        return await self._settle("fail", lease, error_text(error))

    async def release(self, lease: Lease) -> Job:
        return await self._settle("release", lease)

    async def cancel(self, job_id: str) -> Job:
        return await self._job("cancel", job_id)

    async def requeue(self, job_id: str) -> Job:
        return await self._job("requeue", job_id)

    # -- reading and housekeeping ----------------------------------------------------------
    async def get(self, job_id: str) -> Job | None:
        reply = await self._link.command("HGETALL", self.keys.job(job_id))
        assert isinstance(reply, list | dict)
        fields = pairs(reply) if isinstance(reply, list) else reply
        return decode_hash(fields) if fields else None

    async def list_jobs(
        self, *, status: JobStatus | None = None, type: str | None = None, limit: int = 100
    ) -> list[Job]:
        if limit < 1:
            return []
        reply = await self._run(
            "list", "" if status is None else status.value, type or "", str(limit)
        )
        assert isinstance(reply, list)
        return [decode_hash(pairs(flat)) for flat in reply[1::2]]

    async def stats(self) -> QueueStats:
        reply = await self._run("stats")
        assert isinstance(reply, list)
        now = self._clock()
        counts: dict[str, dict[JobStatus, int]] = {}
        for row in reply[2:]:
            by_status = {
                status: int(n) for status, n in zip(STATUS_ORDER, row[1:], strict=True) if n
            }
            if by_status:
                counts[row[0].decode()] = by_status
        oldest = max(0.0, now - float(reply[1])) if reply[1] else None
        return QueueStats(counts=counts, oldest_due_age=oldest, expired_leases=int(reply[0]))

    async def reap(self) -> int:
        reclaimed = 0
        while True:
            reply = await self._run("reap", str(REAP_LIMIT))
            assert isinstance(reply, list)
            reclaimed += int(reply[0])
            if not int(reply[1]):
                return reclaimed

    async def close(self) -> None:
        await self._link.close()
