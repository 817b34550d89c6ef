"""Claiming: one statement picks, locks and leases the next due jobs (FOR UPDATE SKIP LOCKED).

Concurrent claims of this process for the same job types share one statement (see
:mod:`.batching`): a request asks for ``count`` jobs (1 for ``claim``, up to the free slots for
``claim_many``); a batch of requests with the same worker id and lease length runs ONE claim with
``LIMIT`` their total, sorts the rows into claim order and deals them out in request order, so
the first caller gets the best job. A row the codec cannot decode is dead-lettered with a clear
error (fenced by the new lease token) and its caller simply asks again; it never raises into a
worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from gaia.validator.core import lifecycle
from gaia.validator.core.errors import CorruptJob
from gaia.validator.core.queue import Lease
from gaia.validator.queues.postgres.batching import Coalescer
from gaia.validator.queues.postgres.connection import Connector, Lane
from gaia.validator.queues.postgres.rows import corrupt_error, job_from_row
from gaia.validator.queues.postgres.statements import Statements

TypeKey = tuple[str, ...] | None
MAX_CLAIM_BATCH = 64


@dataclass(frozen=True)
class ClaimRequest:
    worker_id: str
    lease_seconds: float
    count: int


@dataclass(frozen=True)
class ClaimOutcome:
    leases: list[Lease]
    quarantined: int
    """Rows this request got that were corrupt (now dead-lettered): ask again for as many."""


class Claimer:
    def __init__(
        self,
        connector: Connector,
        statements: Statements,
        clock: Callable[[], float],
        release: Callable[[Lease], Awaitable[object]],
    ) -> None:
        self._connector = connector
        self._sql = statements
        self._clock = clock
        self._release = release
        self._coalescers: dict[TypeKey, Coalescer[ClaimRequest, ClaimOutcome]] = {}
        self._lanes: dict[TypeKey, Lane] = {}
        self._releasing: set[asyncio.Task[None]] = set()

    async def claim_now(
        self, worker_id: str, types: TypeKey, lease_seconds: float, count: int = 1
    ) -> list[Lease]:
        """Claim up to ``count`` due jobs of ``types`` (None: any type), best first; [] if none
        is due."""
        coalescer = self._coalescers.get(types)
        if coalescer is None:
            self._lanes[types] = Lane(self._connector)
            coalescer = Coalescer(
                lambda batch: self._claim_batch(types, batch),
                max_batch=MAX_CLAIM_BATCH,
                on_abandoned=self._abandoned,
            )
            self._coalescers[types] = coalescer
        leases: list[Lease] = []
        while count > 0:
            outcome = await coalescer.submit(ClaimRequest(worker_id, lease_seconds, count))
            leases += outcome.leases
            count = outcome.quarantined  # as many as were dead-lettered: ask again
        return leases

    async def _claim_batch(
        self, types: TypeKey, batch: list[ClaimRequest]
    ) -> list[ClaimOutcome]:
        groups: dict[tuple[str, float], list[int]] = {}
        for index, request in enumerate(batch):
            groups.setdefault((request.worker_id, request.lease_seconds), []).append(index)
        outcomes: list[ClaimOutcome] = []
        order: list[int] = []
        for (worker_id, lease_seconds), members in groups.items():
            counts = [batch[i].count for i in members]
            rows = await self._claim_rows(types, worker_id, lease_seconds, sum(counts))
            outcomes += await self.deal(rows, counts)
            order += members
        if len(groups) == 1:
            return outcomes
        by_request = dict(zip(order, outcomes, strict=True))
        return [by_request[index] for index in range(len(batch))]

    async def deal(self, rows: list[asyncpg.Record], counts: list[int]) -> list[ClaimOutcome]:
        """Claimed rows into leases, best first, ``counts[i]`` (at most) for request ``i``;
        a corrupt row is dead-lettered and counted as quarantined for its request."""
        if len(rows) > 1:
            rows.sort(key=_claim_order)
        outcomes = []
        position = 0
        for count in counts:
            leases: list[Lease] = []
            quarantined = 0
            for row in rows[position : position + count]:
                try:
                    leases.append(lifecycle.lease_for(job_from_row(row)))
                except CorruptJob as problem:
                    await self._quarantine(row, problem)
                    quarantined += 1
            position += count
            outcomes.append(ClaimOutcome(leases, quarantined))
        return outcomes

    async def _claim_rows(
        self, types: TypeKey, worker_id: str, lease_seconds: float, count: int
    ) -> list[asyncpg.Record]:
        args: list[object] = [self._clock(), lease_seconds, worker_id, count]
        sql = self._sql.claim_any
        if types is not None:
            sql = self._sql.claim_types
            args.append(list(types))
        return await self._lanes[types].run(lambda conn, _: conn.fetch(sql, *args))

    async def _quarantine(self, row: asyncpg.Record, problem: CorruptJob) -> None:
        """Dead-letter a claimed row the codec refused, fenced by the token the claim gave it."""
        error = corrupt_error(row["id"], problem)
        args = (self._sql.quarantine, row["id"], row["lease_token"], error, self._clock())
        await self._connector.run(lambda conn, _: conn.execute(*args))

    def _abandoned(self, outcome: ClaimOutcome) -> None:
        """A claimer was cancelled while its claim was in flight: hand its jobs back at once."""
        self.hand_back(outcome.leases)

    def hand_back(self, leases: list[Lease]) -> None:
        """Release claimed leases nobody will run, in the background."""
        for lease in leases:
            task = asyncio.get_running_loop().create_task(self._release_quietly(lease))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_quietly(self, lease: Lease) -> None:
        with contextlib.suppress(Exception):  # else the reaper reclaims it when the lease expires
            await self._release(lease)

    def in_flight(self) -> list[asyncio.Task[None]]:
        """Claims in flight, and releases of abandoned claims."""
        tasks = [task for coalescer in self._coalescers.values() for task in coalescer.in_flight()]
        return tasks + list(self._releasing)


def _claim_order(row: asyncpg.Record) -> tuple[int, float, int]:
    """The order of the claim index: highest priority, then earliest due, then oldest."""
    return -row["priority"], row["not_before"], row["seq"]
