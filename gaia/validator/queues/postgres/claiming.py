"""Claiming: one statement picks, locks and leases the next due jobs (FOR UPDATE SKIP LOCKED).

Concurrent claims of this process for the same job types share one statement (see
:mod:`.batching`): a lone claim runs ``UPDATE ... WHERE id = (SELECT ... LIMIT 1 FOR UPDATE SKIP
LOCKED)``; ``k`` concurrent ones run the same pick with ``LIMIT k`` and give each caller one job,
in claim order. A row the codec cannot decode is dead-lettered with a clear error (fenced by the
new lease token) and its caller simply tries again; it never raises into a worker.
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


class _Quarantined:
    """Marker outcome: this caller's row was corrupt and dead-lettered; claim again."""


QUARANTINED = _Quarantined()
ClaimOutcome = Lease | None | _Quarantined


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
        self, worker_id: str, types: TypeKey, lease_seconds: float
    ) -> Lease | None:
        """Claim one due job of ``types`` (None: any type) or return None if none is due."""
        coalescer = self._coalescers.get(types)
        if coalescer is None:
            self._lanes[types] = Lane(self._connector)
            coalescer = Coalescer(
                lambda batch: self._claim_batch(types, batch),
                max_batch=MAX_CLAIM_BATCH,
                on_abandoned=self._abandoned,
            )
            self._coalescers[types] = coalescer
        while True:
            outcome = await coalescer.submit(ClaimRequest(worker_id, lease_seconds))
            if not isinstance(outcome, _Quarantined):
                return outcome

    async def _claim_batch(
        self, types: TypeKey, batch: list[ClaimRequest]
    ) -> list[ClaimOutcome]:
        now = self._clock()
        type_list = None if types is None else list(types)
        if len(batch) == 1:
            request = batch[0]
            args: list[object] = [now, request.lease_seconds, request.worker_id]
            sql = self._sql.claim_any
            if type_list is not None:
                sql = self._sql.claim_types
                args.append(type_list)

            async def one(conn: asyncpg.Connection, _: int) -> list[asyncpg.Record]:
                row = await conn.fetchrow(sql, *args)
                return [] if row is None else [row]

            rows = await self._lanes[types].run(one)
            by_slot = dict.fromkeys([1], rows[0]) if rows else {}
        else:
            leases = [request.lease_seconds for request in batch]
            workers = [request.worker_id for request in batch]
            args = [now, leases, workers, len(batch)]
            sql = self._sql.claim_batch_any
            if type_list is not None:
                sql = self._sql.claim_batch_types
                args.append(type_list)
            rows = await self._lanes[types].run(lambda conn, _: conn.fetch(sql, *args))
            by_slot = {row["slot"]: row for row in rows}
        outcomes: list[ClaimOutcome] = []
        for slot in range(1, len(batch) + 1):
            row = by_slot.get(slot)
            if row is None:
                outcomes.append(None)
                continue
            try:
                outcomes.append(lifecycle.lease_for(job_from_row(row)))
            except CorruptJob as problem:
                await self._quarantine(row, problem)
                outcomes.append(QUARANTINED)
        return outcomes

    async def _quarantine(self, row: asyncpg.Record, problem: CorruptJob) -> None:
        """Dead-letter a claimed row the codec refused, fenced by the token the claim gave it."""
        error = corrupt_error(row["id"], problem)
        args = (self._sql.quarantine, row["id"], row["lease_token"], error, self._clock())
        await self._connector.run(lambda conn, _: conn.execute(*args))

    def _abandoned(self, outcome: ClaimOutcome) -> None:
        """A claimer was cancelled while its claim was in flight: hand the job back at once."""
        if isinstance(outcome, Lease):
            task = asyncio.get_running_loop().create_task(self._release_quietly(outcome))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_quietly(self, lease: Lease) -> None:
        with contextlib.suppress(Exception):  # else the reaper reclaims it when the lease expires
            await self._release(lease)

    def in_flight(self) -> list[asyncio.Task[None]]:
        """Claims in flight, and releases of abandoned claims."""
        tasks = [task for coalescer in self._coalescers.values() for task in coalescer.in_flight()]
        return tasks + list(self._releasing)
