"""Completing a job and claiming the next ones in ONE statement (``complete_and_claim``).

A worker whose slot just finished a job wants two things: the job recorded as succeeded, and a
new job for the slot. Done as ``complete`` then ``claim``, that is two statements, two commits and
two round trips per batch; here concurrent requests of this process (for the same job types)
share one statement that completes all their jobs and claims all the jobs they asked for, so a
busy worker pays one round trip and one commit per batch. The claims commit together with the
completions, never before them: the new jobs are held only once the finished ones are recorded.

Each request gets its completed job and up to ``count`` leases, best first. A completion the
statement did not match (lease lost, or a commit whose reply was lost and is retried) goes
through the single-lease path; if that raises (LeaseLost), the request's new leases are handed
back at once and the error is raised: nothing stays claimed for a caller that got an error.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg

from gaia.validator.core.job import Job
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease
from gaia.validator.queues.postgres.batching import Coalescer
from gaia.validator.queues.postgres.claiming import Claimer, TypeKey
from gaia.validator.queues.postgres.completing import Completer, Completion, completion
from gaia.validator.queues.postgres.connection import Connector, Lane
from gaia.validator.queues.postgres.statements import Statements

MAX_FUSED_BATCH = 64


@dataclass(frozen=True)
class FusedRequest:
    completion: Completion
    lease_seconds: float
    count: int

    @property
    def worker_id(self) -> str:
        return self.completion.lease.worker_id


FusedOutcome = tuple[Job, list[Lease]]


class Fuser:
    def __init__(
        self,
        connector: Connector,
        statements: Statements,
        clock: Callable[[], float],
        completer: Completer,
        claimer: Claimer,
    ) -> None:
        self._connector = connector
        self._sql = statements
        self._clock = clock
        self._completer = completer
        self._claimer = claimer
        self._coalescers: dict[TypeKey, Coalescer[FusedRequest, FusedOutcome]] = {}
        self._lanes: dict[TypeKey, Lane] = {}

    async def complete_and_claim(
        self, lease: Lease, result: JSONValue, types: TypeKey, lease_seconds: float, count: int
    ) -> FusedOutcome:
        coalescer = self._coalescers.get(types)
        if coalescer is None:
            self._lanes[types] = Lane(self._connector)
            coalescer = Coalescer(
                lambda batch: self._run_batch(types, batch),
                max_batch=MAX_FUSED_BATCH,
                on_abandoned=lambda outcome: self._claimer.hand_back(outcome[1]),
            )
            self._coalescers[types] = coalescer
        request = FusedRequest(completion(lease, result), lease_seconds, count)
        return await coalescer.submit(request)

    async def _run_batch(
        self, types: TypeKey, batch: list[FusedRequest]
    ) -> list[FusedOutcome | Exception]:
        groups: dict[tuple[str, float], list[int]] = {}
        for index, request in enumerate(batch):
            groups.setdefault((request.worker_id, request.lease_seconds), []).append(index)
        outcomes: dict[int, FusedOutcome | Exception] = {}
        for (worker_id, lease_seconds), members in groups.items():
            requests = [batch[i] for i in members]
            for index, outcome in zip(
                members,
                await self._run_group(types, worker_id, lease_seconds, requests),
                strict=True,
            ):
                outcomes[index] = outcome
        return [outcomes[index] for index in range(len(batch))]

    async def _run_group(
        self, types: TypeKey, worker_id: str, lease_seconds: float, requests: list[FusedRequest]
    ) -> list[FusedOutcome | Exception]:
        now = self._clock()
        completions = [request.completion for request in requests]
        counts = [request.count for request in requests]
        args: list[object] = [
            now,
            lease_seconds,
            worker_id,
            sum(counts),
            [item.lease.job_id for item in completions],
            [item.lease.token for item in completions],
            [item.encoded for item in completions],
        ]
        sql = self._sql.complete_and_claim_any
        if types is not None:
            sql = self._sql.complete_and_claim_types
            args.append(list(types))
        attempts = [0]

        async def run(conn: asyncpg.Connection, attempt: int) -> list[asyncpg.Record]:
            attempts[0] = attempt
            fetched: list[asyncpg.Record] = await conn.fetch(sql, *args)
            return fetched

        rows = await self._lanes[types].run(run)
        progress = {
            (row["done_id"], row["done_token"]): row["done_progress"]
            for row in rows
            if row["done_id"] is not None
        }
        claimed = [row for row in rows if row["done_id"] is None]
        jobs = await self._completer.outcomes(completions, progress, now, retried=attempts[0] > 1)
        dealt = await self._claimer.deal(claimed, counts)
        outcomes: list[FusedOutcome | Exception] = []
        for job, claim in zip(jobs, dealt, strict=True):
            leases = claim.leases
            if claim.quarantined and not isinstance(job, Exception):
                leases = leases + await self._claimer.claim_now(
                    worker_id, types, lease_seconds, claim.quarantined
                )
            if isinstance(job, Exception):
                self._claimer.hand_back(leases)
                outcomes.append(job)
            else:
                outcomes.append((job, leases))
        return outcomes

    def in_flight(self) -> list[asyncio.Task[None]]:
        return [task for coalescer in self._coalescers.values() for task in coalescer.in_flight()]
