"""WorkerPool on a backend that completes and claims in one call: a slot runs its next job from
the completion's claim; every job still runs exactly once, and a stop hands chained claims back."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Collection
from dataclasses import dataclass

from gaia.validator.core import Job, JobStatus, Task, TaskContext, TaskRegistry
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease
from gaia.validator.queues.memory import MemoryQueue
from gaia.validator.workers import PoolConfig, WorkerPool


class FusingMemoryQueue(MemoryQueue):
    """The in-memory queue declaring a fused complete-and-claim (the contract's default body:
    complete, then a non-waiting claim_many), counting the jobs it hands on that way."""

    fuses_complete_and_claim = True

    def __init__(self) -> None:
        super().__init__()
        self.chained = 0

    async def complete_and_claim(
        self,
        lease: Lease,
        result: JSONValue = None,
        *,
        count: int = 1,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
    ) -> tuple[Job, list[Lease]]:
        assert count == 1, "a slot asks for its own next job only"
        job, leases = await super().complete_and_claim(
            lease, result, count=count, types=types, lease_seconds=lease_seconds
        )
        assert all(next_lease.worker_id == lease.worker_id for next_lease in leases)
        self.chained += len(leases)
        return job, leases


@dataclass(frozen=True)
class Count:
    n: int


async def settled(queue: MemoryQueue, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while queue.active_count():
        assert time.monotonic() < deadline, "jobs did not settle in time"
        await asyncio.sleep(0.01)


async def test_slots_chain_their_next_jobs_and_each_job_runs_once() -> None:
    runs: Counter[int] = Counter()

    async def noop(ctx: TaskContext, payload: Count) -> int:
        runs[payload.n] += 1
        return payload.n

    task = Task("test.noop", noop, Count)
    queue = FusingMemoryQueue()
    jobs = await queue.enqueue_many([task.job(Count(i)) for i in range(2_000)])
    async with WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=10, idle_wait=0.05)):  # type: ignore[list-item]
        await settled(queue)
    assert len(runs) == 2_000 and set(runs.values()) == {1}
    assert (await queue.stats()).total(JobStatus.SUCCEEDED) == 2_000
    # most jobs after the first batch reach their slot through a completion's claim
    assert queue.chained > 1_500
    stored = await queue.get(jobs[7].id)
    assert stored is not None and stored.result == 7


async def test_a_stop_hands_back_a_chained_claim_instead_of_running_it() -> None:
    started: list[int] = []
    release_first = asyncio.Event()

    async def gated(ctx: TaskContext, payload: Count) -> None:
        started.append(payload.n)
        if payload.n == 0:
            await release_first.wait()

    task = Task("test.gated", gated, Count)
    queue = FusingMemoryQueue()
    first, second = await queue.enqueue_many([task.job(Count(0)), task.job(Count(1), delay=0.3)])
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=1, idle_wait=0.05))  # type: ignore[list-item]
    await pool.start()
    while not started:
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.4)  # the second job is due now; the only slot is busy with the first
    stopping = asyncio.create_task(pool.stop(drain_seconds=5.0))
    await asyncio.sleep(0.05)
    release_first.set()
    await stopping
    done, waiting = await queue.get(first.id), await queue.get(second.id)
    assert done is not None and done.status is JobStatus.SUCCEEDED
    # stopping: the completion did not claim, and the second job never ran
    assert waiting is not None and waiting.status is JobStatus.QUEUED and started == [0]


class HeldFusingQueue(FusingMemoryQueue):
    """Holds each completion's reply until ``reply`` is set, so a stop can land in between."""

    def __init__(self) -> None:
        super().__init__()
        self.in_flight = asyncio.Event()
        self.reply = asyncio.Event()

    async def complete_and_claim(
        self,
        lease: Lease,
        result: JSONValue = None,
        *,
        count: int = 1,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
    ) -> tuple[Job, list[Lease]]:
        recorded = await super().complete_and_claim(
            lease, result, count=count, types=types, lease_seconds=lease_seconds
        )
        self.in_flight.set()
        await self.reply.wait()
        return recorded


async def test_a_claim_that_arrives_after_the_stop_began_is_released_not_run() -> None:
    started: list[int] = []

    async def noop(ctx: TaskContext, payload: Count) -> None:
        started.append(payload.n)

    task = Task("test.noop", noop, Count)
    queue = HeldFusingQueue()
    first, second = await queue.enqueue_many([task.job(Count(0)), task.job(Count(1))])
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=1, idle_wait=0.05))  # type: ignore[list-item]
    await pool.start()
    await queue.in_flight.wait()  # the first job's completion has claimed the second
    stopping = asyncio.create_task(pool.stop(drain_seconds=5.0))
    await asyncio.sleep(0.05)
    queue.reply.set()
    await stopping
    done, handed_back = await queue.get(first.id), await queue.get(second.id)
    assert queue.chained == 1 and started == [0]
    assert done is not None and done.status is JobStatus.SUCCEEDED
    assert handed_back is not None and handed_back.status is JobStatus.QUEUED
    assert handed_back.attempts == 0  # released: the claim's attempt was given back
