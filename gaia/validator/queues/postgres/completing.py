"""Completing: concurrent ``complete`` calls of this process share one fenced UPDATE.

Each result is encoded to JSON by its own caller first, so a result that is not JSON fails that
caller alone. The batch statement updates only rows still held (``lease_token`` matches and the
job is running) and returns their ids; each caller's job is then the lifecycle rule
``completed`` applied to its lease's copy, which is what the row now holds unless a heartbeat
through another copy of the lease changed the progress (then the row is read back). A lease
the batch did not match goes through the single-lease path, which raises LeaseLost (fencing),
unless the batch ran again after a lost reply and finds the job already succeeded under this
lease (its first run committed).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

from gaia.validator.core.codec import progress_to_record
from gaia.validator.core.job import Job
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.postgres.batching import Coalescer
from gaia.validator.queues.postgres.connection import Connector, Lane
from gaia.validator.queues.postgres.rows import completed_copy, encode_json
from gaia.validator.queues.postgres.statements import Statements

MAX_COMPLETE_BATCH = 100


@dataclass(frozen=True)
class Completion:
    lease: Lease
    result: JSONValue
    encoded: str | None


def completion(lease: Lease, result: JSONValue) -> Completion:
    """The result is encoded by its own caller, so a result that is not JSON fails it alone."""
    return Completion(lease, result, None if result is None else encode_json(result))


class Completer:
    def __init__(
        self,
        connector: Connector,
        statements: Statements,
        clock: Callable[[], float],
        complete_one: Callable[[Lease, JSONValue], Awaitable[Job]],
        read_back: Callable[[str], Awaitable[Job]],
    ) -> None:
        self._connector = connector
        self._sql = statements
        self._clock = clock
        self._complete_one = complete_one
        self._read_back = read_back
        self._lane = Lane(connector)
        self._coalescer: Coalescer[Completion, Job] = Coalescer(
            self._complete_batch, max_batch=MAX_COMPLETE_BATCH
        )

    async def complete(self, lease: Lease, result: JSONValue) -> Job:
        return await self._coalescer.submit(completion(lease, result))

    async def _complete_batch(self, batch: list[Completion]) -> list[Job | Exception]:
        if len(batch) == 1:
            return [await self._complete_one(batch[0].lease, batch[0].result)]
        now = self._clock()
        ids = [item.lease.job_id for item in batch]
        tokens = [item.lease.token for item in batch]
        results = [item.encoded for item in batch]
        attempts = [0]

        async def run(conn: asyncpg.Connection, attempt: int) -> list[asyncpg.Record]:
            attempts[0] = attempt
            rows: list[asyncpg.Record] = await conn.fetch(
                self._sql.complete_batch, now, ids, tokens, results
            )
            return rows

        rows = await self._lane.run(run)
        progress = {(row["id"], row["lease_token"]): row["progress"] for row in rows}
        return await self.outcomes(batch, progress, now, retried=attempts[0] > 1)

    async def outcomes(
        self,
        batch: list[Completion],
        progress: dict[tuple[str, int], JSONValue],
        now: float,
        *,
        retried: bool,
    ) -> list[Job | Exception]:
        """Each completion's job, given the (id, token) -> progress of the rows a batch
        statement completed at ``now``. A completion it did not match takes the single path,
        unless the statement ran again after a lost reply and the job is already succeeded
        under this lease (the first run committed)."""
        outcomes: list[Job | Exception] = []
        for item in batch:
            lease = item.lease
            key = (lease.job_id, lease.token)
            try:
                if key not in progress:
                    stored = await self._read_back(lease.job_id) if retried else None
                    if (
                        stored is not None
                        and stored.status is JobStatus.SUCCEEDED
                        and stored.lease_token == lease.token
                    ):
                        outcomes.append(stored)
                    else:
                        outcomes.append(await self._complete_one(lease, item.result))
                elif progress[key] == progress_to_record(lease.job.progress):
                    outcomes.append(completed_copy(lease.job, now, item.result))
                else:
                    outcomes.append(await self._read_back(lease.job_id))
            except Exception as error:
                outcomes.append(error)
        return outcomes

    def in_flight(self) -> list[asyncio.Task[None]]:
        return self._coalescer.in_flight()
