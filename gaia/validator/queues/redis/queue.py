"""RedisQueue: the Queue contract on Redis, one atomic Lua function per lifecycle step."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence

from redis.exceptions import ResponseError

from gaia.validator.core import lifecycle
from gaia.validator.core.errors import CorruptJob, LeaseLost
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease, Queue, QueueStats
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.redis.connection import RedisLink, translate
from gaia.validator.queues.redis.options import RedisOptions
from gaia.validator.queues.redis.pipelining import GroupArguments, Ran, Reply
from gaia.validator.queues.redis.records import (
    decode_hash,
    enqueue_resp,
    error_text,
    json_text,
    micros,
    number_text,
    pairs,
    worker_text,
)
from gaia.validator.queues.redis.replies import (
    complete_item,
    decode_claimed,
    decode_completed,
    decode_settled,
    held_state,
    new_lease,
)
from gaia.validator.queues.redis.wire import Packed, pack_words

log = logging.getLogger(__name__)

ENQUEUE_WIDTH = 8  # arguments per job of the enqueue function
ENQUEUE_CHUNK = 250  # jobs per enqueue call of a large batch: the next is packed while one runs
FIRST_CHUNK = 16  # jobs in the first call of a large batch (see _part_ends)
PART_GROWTH = 2  # each part at most this many times the one before
REAP_LIMIT = 1_000  # expired leases / purges handled per set and reap call
CLAIMED_WIDTH = 5  # values per job in a claim entry: id, spec, state, error, info
STATUS_ORDER = (
    JobStatus.QUEUED,
    JobStatus.RUNNING,
    JobStatus.SUCCEEDED,
    JobStatus.RETRY_SCHEDULED,
    JobStatus.DEAD,
    JobStatus.CANCELLED,
)  # the order of STATUSES in the Lua library
_EXHAUSTED = error_text(JobError("no attempt left", kind=lifecycle.EXHAUSTED))
_AS_IS = (type(None), str, int, bool, float)  # results whose JSON round trip is the identity
CLAIM_GROUPS_KEPT = 64
_ClaimGroup = tuple[tuple[tuple[str, ...], float], GroupArguments]  # batching key, its arguments


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
        self._claim_groups: dict[tuple[tuple[str, ...], float], _ClaimGroup] = {}

    async def _job(self, step: str, *arguments: str) -> Job:
        reply, _ = await self._link.single(step, lambda now: arguments)
        assert isinstance(reply, list)
        return decode_hash(pairs(reply))

    async def _settle(self, step: str, lease: Lease, *arguments: str) -> Job:
        entry, _ = await self._link.batched(step, [lease.job_id, str(lease.token), *arguments])
        assert isinstance(entry, list)
        return decode_settled(lease.job, entry)

    # -- writing ---------------------------------------------------------------------------
    async def enqueue(self, job: Job) -> Job:
        return (await self.enqueue_many([job]))[0]

    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        """Store ``jobs``: up to ENQUEUE_CHUNK in one call (shared with other callers of the
        same event-loop turn), more in parts streamed in order (:meth:`_enqueue_parts`).

        A batch of one call is all or nothing. For a larger batch, an id already stored refuses
        the whole batch (the first part checks them all before anything is written; each part
        checks its own again, so an id stored meanwhile by another client refuses that part
        and the ones after it, not the ones before).
        """
        self._link.check_open()
        ids = lifecycle.batch_ids(jobs)
        lifecycle.check_enqueueable(jobs)
        if not jobs:
            return []
        if len(jobs) <= ENQUEUE_CHUNK:
            entry, _ = await self._link.batched("enqueue", _group(jobs))
            entries = [entry]
        else:
            entries = await self._enqueue_parts(jobs, ids)
        stored: list[Job] = []
        for entry in entries:
            if isinstance(entry, ResponseError):
                raise translate(entry)
            assert isinstance(entry, list)
            for one in entry:
                stored.append(jobs[len(stored)] if one == 0 else decode_hash(pairs(one)))
        assert len(stored) == len(jobs)
        return stored

    async def _enqueue_parts(self, jobs: Sequence[Job], ids: list[str]) -> list[Reply]:
        """A batch of more than ENQUEUE_CHUNK jobs, in parts streamed without waiting in
        between: a short first part (the server starts while the client packs the rest) that
        checks every id of the batch, then parts of ENQUEUE_CHUNK (see ``enqueue_part`` in
        :mod:`.intake_scripts`). The entries of the parts, in order."""
        token = uuid.uuid4().hex
        ends = _part_ends(len(jobs))

        def calls() -> Iterator[Packed]:
            start = 0
            for n, end in enumerate(ends):
                if n == 0:
                    head = pack_words(["first", token, str(len(ids)), *ids])
                    words = 3 + len(ids)
                else:
                    head = pack_words(["last" if end == len(jobs) else "next", token, "0"])
                    words = 3
                group = _group(jobs[start:end])
                yield Packed(head + group.data, words + group.count)
                start = end

        entries: list[Reply] = []
        refused: Exception | None = None
        for reply, _ in await self._link.stream("enqueue_part", calls):
            if isinstance(reply, ResponseError):
                raise translate(reply)
            assert isinstance(reply, list)
            entry = reply[0]
            if isinstance(entry, ResponseError):
                refused = refused or translate(entry)  # the first refusal says why
            entries.append(entry)
        if refused is not None:
            raise refused
        return entries

    # -- claiming --------------------------------------------------------------------------
    async def claim_many(
        self,
        worker_id: str,
        count: int,
        *,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Claim up to ``count`` due jobs in claim order in one function call.

        Claims made in the same event-loop turn with the same types and lease length share one
        call, served in the order they were made. Waits up to ``wait`` seconds for the first
        job; returns as soon as any could be claimed.
        """
        link = self._link
        if link.closed:
            link.check_open()
        if not worker_id:
            raise ValueError("worker_id must be a non-empty string")
        scope = lifecycle.claim_scope(types, lease_seconds, count)
        subscribed = None if scope is None else tuple(scope)
        started = time.monotonic() if wait > 0 else 0.0
        group = self._claim_group(subscribed or (), lease_seconds)
        while True:
            leases, next_due = await self._claim_now(worker_id, count, group, lease_seconds)
            if leases or wait <= 0 or link.closed:
                return leases
            remaining = started + wait - time.monotonic()
            if remaining <= 0:
                return []
            if next_due is not None:
                remaining = min(remaining, max(0.0, next_due - self._clock()))
            if remaining > 0:
                await link.wait(self._wake_keys(subscribed), remaining)
            if link.closed:
                return []  # closed while waiting: the claim ends empty

    def _claim_group(self, types: tuple[str, ...], lease_seconds: float) -> _ClaimGroup:
        """The batching group of claims of ``types`` with ``lease_seconds`` (kept for reuse)."""
        key = (types, lease_seconds)
        group = self._claim_groups.get(key)
        if group is None:
            if len(self._claim_groups) >= CLAIM_GROUPS_KEPT:
                self._claim_groups.clear()

            def group_arguments(now: float) -> list[str]:
                expires = now + lease_seconds
                return [number_text(expires), micros(expires), str(len(types)), *types]

            group = self._claim_groups[key] = (key, group_arguments)
        return group

    def _wake_keys(self, types: tuple[str, ...] | None) -> list[str]:
        if types is None:
            return [self.keys.wake(None)]
        return [self.keys.wake(job_type) for job_type in types]

    async def _claim_now(
        self, worker_id: str, count: int, group: _ClaimGroup, lease_seconds: float
    ) -> tuple[list[Lease], float | None]:
        """Leases claimed now, and the due time of the next delayed job when none was."""
        key, group_arguments = group
        item = [worker_text(worker_id), str(count), "", ""]
        while True:
            entry, now = await self._link.batched(
                "claim", item, group=key, group_arguments=group_arguments
            )
            assert isinstance(entry, list)
            next_due = float(entry[0]) if entry[0] else None
            leases, buried = await self._leases(entry, now, worker_id, lease_seconds)
            if leases or not buried:
                return leases, next_due
            # Every claimed record was undecodable and is now dead-lettered: try again.

    async def _leases(
        self, entry: list[bytes | None], now: float, worker_id: str, lease_seconds: float
    ) -> tuple[list[Lease], int]:
        """The leases of a claim's reply entry, and how many records were dead-lettered as
        undecodable instead."""
        expires = now + lease_seconds
        leases: list[Lease] = []
        buried = 0
        for at in range(1, len(entry), CLAIMED_WIDTH):
            job_id, spec, state, error, info = entry[at : at + CLAIMED_WIDTH]
            assert isinstance(job_id, bytes) and isinstance(state, bytes)
            try:
                job = decode_claimed(
                    job_id.decode(),
                    spec,
                    state,
                    error,
                    info,
                    now=now,
                    expires=expires,
                    worker_id=worker_id,
                )
            except CorruptJob as exc:
                await self._bury(job_id.decode(), state, exc)
                buried += 1
                continue
            leases.append(new_lease(job, worker_id, expires))
        return leases, buried

    async def _bury(self, job_id: str, state: bytes, error: CorruptJob) -> None:
        """Dead-letter a claimed job the client could not decode (its lease token is the third
        word of its state line)."""
        message = str(error)
        if "invalid" not in message.lower():
            message = f"job record is invalid: {message}"
        log.error("redis queue %s: dead-lettering job %s: %s", self.url, job_id, message)
        words = state.split(b" ", 3)
        token = words[2].decode(errors="replace") if len(words) > 2 else "0"
        with contextlib.suppress(LeaseLost):  # reclaimed or cancelled meanwhile
            await self._link.single("bury_job", lambda now: (job_id, token, message))

    fuses_complete_and_claim = True

    async def complete_and_claim(
        self,
        lease: Lease,
        result: JSONValue = None,
        *,
        count: int = 1,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
    ) -> tuple[Job, list[Lease]]:
        """``complete`` and ``claim_many`` for the same worker in one write. The claim runs just
        before the completion (claims go first in a turn's pipeline), and only if the job is
        still running under this lease, so a completion refused for a stale lease claims
        nothing. Should the completion still fail (the lease expired and was reaped between
        the two), the new leases are released (the attempt given back) before it raises."""
        subscribed = lifecycle.claim_scope(types, lease_seconds, count)
        key, group_arguments = self._claim_group(tuple(subscribed or ()), lease_seconds)
        job = lease.job
        item = [worker_text(lease.worker_id), str(count), job.id, held_state(lease)]
        claiming = self._link.submit("claim", item, group=key, group_arguments=group_arguments)
        try:
            done = await self.complete(lease, result)  # submitted in this turn, with the claim
        except Exception:
            await self._hand_back(claiming, lease.worker_id, lease_seconds)
            raise
        try:
            entry, now = await claiming
        except Exception as error:
            log.warning("redis queue %s: claim after a completion failed: %s", self.url, error)
            return done, []  # the completion is recorded; the next claim comes the usual way
        assert isinstance(entry, list)
        claimed, _ = await self._leases(entry, now, lease.worker_id, lease_seconds)
        return done, claimed

    async def _hand_back(
        self, claiming: asyncio.Future[Ran], worker_id: str, lease_seconds: float
    ) -> None:
        """Release what a claim made beside a failed completion took (usually nothing: the
        claim asked for the completed job to be still held). What cannot be released is
        reclaimed when its lease expires."""
        try:
            entry, now = await claiming
        except Exception:
            return  # the claim failed too: it took nothing, or nothing we can name
        assert isinstance(entry, list)
        claimed, _ = await self._leases(entry, now, worker_id, lease_seconds)
        for next_lease in claimed:
            try:
                await self.release(next_lease)
            except Exception as error:
                log.warning(
                    "redis queue %s: could not release job %s after a failed completion (%s); "
                    "it is reclaimed when its lease expires",
                    self.url,
                    next_lease.job_id,
                    error,
                )

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
        entry, _ = await self._link.batched(
            "heartbeat",
            [lease.job_id, str(lease.token), shown],
            group=lease_seconds,
            group_arguments=lambda now: [
                number_text(now + lease_seconds),
                micros(now + lease_seconds),
            ],
        )
        assert isinstance(entry, list)
        return lifecycle.lease_for(decode_settled(lease.job, entry))

    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        text = json_text(result)
        entry, now = await self._link.batched("complete", complete_item(lease, text))
        assert isinstance(entry, list)
        stored = result if type(result) in _AS_IS else json.loads(text)
        return decode_completed(lease.job, entry, now, stored)

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
        arguments = ("" if status is None else status.value, type or "", str(limit))
        reply, _ = await self._link.single("list", lambda now: arguments)
        assert isinstance(reply, list)
        return [decode_hash(pairs(flat)) for flat in reply[1::2]]

    async def stats(self) -> QueueStats:
        reply, now = await self._link.single("stats", lambda now: ())
        assert isinstance(reply, list)
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
            reply, _ = await self._link.single("reap", lambda now: (str(REAP_LIMIT),))
            assert isinstance(reply, list)
            reclaimed += int(reply[0])
            if not int(reply[1]):
                return reclaimed

    async def close(self) -> None:
        await self._link.close()


def _part_ends(total: int) -> list[int]:
    """Where the parts of a batch of ``total`` jobs end. The server stores a job in about
    three times the client's time to pack one, so parts grow (up to ENQUEUE_CHUNK) as fast as
    that allows without the server waiting for the next: the first is packed while the server
    is idle, and each later one while the server stores the part before it."""
    ends: list[int] = []
    end, size = 0, FIRST_CHUNK
    while end + size < total:
        end += size
        ends.append(end)
        size = min(ENQUEUE_CHUNK, size * PART_GROWTH)
    ends.append(total)
    return ends


def _group(jobs: Sequence[Job], groups: int | None = None) -> Packed:
    """The enqueue function's arguments for one all-or-nothing group of jobs, packed; with
    ``groups``, preceded by the number of groups (a call of its own)."""
    count = str(len(jobs))
    head = [count] if groups is None else [str(groups), count]
    text = "".join([enqueue_resp(job) for job in jobs])
    return Packed(pack_words(head) + text.encode(), len(head) + ENQUEUE_WIDTH * len(jobs))
