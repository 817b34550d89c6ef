"""WorkerPool behaviour over the in-memory queue: exactly-once runs, timeouts, retries, dead-letter,
unknown types, invalid payloads, not-ready, cancellation and graceful drain."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import pytest

from gaia.validator.core import (
    Job,
    JobStatus,
    NotReady,
    PermanentError,
    RetryPolicy,
    Task,
    TaskContext,
    TaskRegistry,
    new_job,
)
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease
from gaia.validator.queues.memory import MemoryQueue
from gaia.validator.workers import PoolConfig, WorkerPool

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


@dataclass(frozen=True)
class Count:
    n: int


async def wait_until_settled(queue: MemoryQueue, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while queue.active_count():
        assert time.monotonic() < deadline, "jobs did not settle in time"
        await asyncio.sleep(0.01)


async def run_jobs(registry: TaskRegistry, jobs: list[Job], **config: object) -> MemoryQueue:
    queue = MemoryQueue()
    await queue.enqueue_many(jobs)
    config.setdefault("idle_wait", 0.05)
    pool = WorkerPool(queue, registry, PoolConfig(**config))  # type: ignore[arg-type]
    async with pool:
        await wait_until_settled(queue)
    return queue


async def test_ten_thousand_noop_jobs_each_run_exactly_once() -> None:
    runs: Counter[int] = Counter()

    async def noop(ctx: TaskContext, payload: Count) -> None:
        runs[payload.n] += 1

    task = Task("test.noop", noop, Count)
    registry = TaskRegistry([task])  # type: ignore[list-item]
    jobs = [task.job(Count(i)) for i in range(10_000)]
    queue = await run_jobs(registry, jobs, concurrency=10)
    assert len(runs) == 10_000
    assert set(runs.values()) == {1}
    assert (await queue.stats()).total(JobStatus.SUCCEEDED) == 10_000


async def test_timeout_is_a_failed_attempt_then_dead_letter() -> None:
    async def slow(ctx: TaskContext, payload: dict[str, int]) -> None:
        await asyncio.sleep(10)

    task = Task("test.slow", slow, dict, retry=FAST_RETRY, timeout=0.1)
    job = task.job({})
    queue = await run_jobs(TaskRegistry([task]), [job])  # type: ignore[list-item]
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.DEAD
    assert stored.attempts == 3
    assert stored.error is not None and stored.error.kind == "timeout"
    assert "timed out after 0.1 s" in stored.error.message


async def test_retries_then_dead_letter_with_last_traceback() -> None:
    calls = 0

    async def flaky(ctx: TaskContext, payload: dict[str, int]) -> None:
        nonlocal calls
        calls += 1
        raise ValueError(f"failure number {calls}")

    task = Task("test.flaky", flaky, dict, retry=FAST_RETRY)
    job = task.job({})
    queue = await run_jobs(TaskRegistry([task]), [job])  # type: ignore[list-item]
    stored = await queue.get(job.id)
    assert calls == 3
    assert stored is not None and stored.status is JobStatus.DEAD
    assert stored.error is not None
    assert stored.error.message == "ValueError: failure number 3"
    assert stored.error.traceback is not None and "raise ValueError" in stored.error.traceback


async def test_success_after_a_retry_records_result() -> None:
    calls = 0

    async def second_time_lucky(ctx: TaskContext, payload: dict[str, int]) -> dict[str, int]:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise ConnectionError("transient")
        return {"calls": calls, "attempt": ctx.attempt}

    task = Task("test.lucky", second_time_lucky, dict, retry=FAST_RETRY)
    job = task.job({})
    queue = await run_jobs(TaskRegistry([task]), [job])  # type: ignore[list-item]
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.SUCCEEDED
    assert stored.result == {"calls": 2, "attempt": 2}


async def test_permanent_error_dead_letters_at_once() -> None:
    async def refuse(ctx: TaskContext, payload: dict[str, int]) -> None:
        raise PermanentError("miner store is unreadable")

    task = Task("test.refuse", refuse, dict, retry=FAST_RETRY)
    job = task.job({})
    queue = await run_jobs(TaskRegistry([task]), [job])  # type: ignore[list-item]
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.DEAD and stored.attempts == 1
    assert stored.error is not None and "miner store is unreadable" in stored.error.message


async def test_unknown_type_is_dead_lettered_with_reason() -> None:
    async def noop(ctx: TaskContext, payload: dict[str, int]) -> None:
        return None

    registry = TaskRegistry([Task("test.known", noop, dict)])  # type: ignore[list-item]
    stray = new_job("test.nobody_serves_this", {})
    queue = MemoryQueue()
    await queue.enqueue(stray)
    async with WorkerPool(queue, registry, subscribe="all"):
        await wait_until_settled(queue)
    stored = await queue.get(stray.id)
    assert stored is not None and stored.status is JobStatus.DEAD
    assert stored.error is not None and stored.error.kind == "unknown_type"
    assert "test.nobody_serves_this" in stored.error.message


async def test_invalid_payload_is_dead_lettered_naming_the_field() -> None:
    async def count(ctx: TaskContext, payload: Count) -> int:
        return payload.n

    registry = TaskRegistry([Task("test.count", count, Count)])  # type: ignore[list-item]
    bad = new_job("test.count", {"n": "seven"})
    queue = await run_jobs(registry, [bad])
    stored = await queue.get(bad.id)
    assert stored is not None and stored.status is JobStatus.DEAD and stored.attempts == 1
    assert stored.error is not None and stored.error.kind == "invalid_payload"
    assert "payload.n: expected int, got str 'seven'" in stored.error.message


async def test_not_ready_reschedules_without_counting_attempts() -> None:
    calls = 0

    async def wait_for_data(ctx: TaskContext, payload: dict[str, int]) -> object:
        nonlocal calls
        calls += 1
        if calls < 4:
            return NotReady(until=time.time() + 0.05, reason="ERA5 not yet published")
        return {"attempt": ctx.attempt}

    task = Task("test.era5", wait_for_data, dict, retry=RetryPolicy(max_attempts=1))
    job = task.job({})
    queue = await run_jobs(TaskRegistry([task]), [job])  # type: ignore[list-item]
    stored = await queue.get(job.id)
    assert calls == 4
    assert stored is not None and stored.status is JobStatus.SUCCEEDED
    assert stored.result == {"attempt": 1}


async def test_cancelling_a_running_job_stops_its_handler() -> None:
    started = asyncio.Event()
    stopped_by_cancel = asyncio.Event()

    async def long(ctx: TaskContext, payload: dict[str, int]) -> None:
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            stopped_by_cancel.set()
            raise

    task = Task("test.long", long, dict)
    job = task.job({})
    queue = MemoryQueue()
    await queue.enqueue(job)
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(lease_seconds=0.3))  # type: ignore[list-item]
    async with pool:
        await asyncio.wait_for(started.wait(), 5)
        await queue.cancel(job.id)
        await asyncio.wait_for(stopped_by_cancel.wait(), 5)
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.CANCELLED


async def test_stop_drains_short_jobs_and_releases_long_ones() -> None:
    async def sleep_for(ctx: TaskContext, payload: dict[str, float]) -> str:
        await asyncio.sleep(payload["seconds"])
        return "done"

    task = Task("test.sleep", sleep_for, dict)
    short = [task.job({"seconds": 0.2}) for _ in range(3)]
    long = [task.job({"seconds": 30.0}) for _ in range(2)]
    queue = MemoryQueue()
    await queue.enqueue_many(short + long)
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=5))  # type: ignore[list-item]
    await pool.start()
    while pool.running_jobs < 5:
        await asyncio.sleep(0.01)
    began = time.monotonic()
    await pool.stop(drain_seconds=1.0)
    assert time.monotonic() - began < 5.0
    for job in short:
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.SUCCEEDED
    for job in long:
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.QUEUED
        assert stored.attempts == 0, "a released claim gives the attempt back"
    assert (await queue.stats()).total(JobStatus.RUNNING) == 0


async def test_process_task_without_a_process_pool_fails_loudly() -> None:
    task = Task("test.cpu", len, dict, executor="process")  # type: ignore[arg-type]
    job = task.job({})
    queue = await run_jobs(TaskRegistry([task]), [job])  # type: ignore[list-item]
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.DEAD
    assert stored.error is not None and "needs the process pool" in stored.error.message


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_concurrency_is_bounded(concurrency: int) -> None:
    active = 0
    peak = 0

    async def track(ctx: TaskContext, payload: dict[str, int]) -> None:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1

    task = Task("test.track", track, dict)
    await run_jobs(
        TaskRegistry([task]),
        [task.job({}) for _ in range(40)],  # type: ignore[list-item]
        concurrency=concurrency,
    )
    assert peak == concurrency


async def test_stop_returns_when_every_slot_is_busy() -> None:
    async def forever(ctx: TaskContext, payload: dict[str, int]) -> None:
        await asyncio.sleep(3600)

    task = Task("test.forever", forever, dict)
    queue = MemoryQueue()
    await queue.enqueue_many([task.job({}) for _ in range(3)])
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=2))  # type: ignore[list-item]
    await pool.start()
    while pool.running_jobs < 2:
        await asyncio.sleep(0.01)
    await asyncio.wait_for(pool.stop(drain_seconds=0.2), timeout=10)
    stats = await queue.stats()
    assert stats.total(JobStatus.QUEUED) == 3 and stats.total(JobStatus.RUNNING) == 0


class SlowCompletions(MemoryQueue):
    """Holds every completion until ``reply`` is set, so a drain deadline lands mid-write."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()
        self.reply = asyncio.Event()

    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        self.writing.set()
        await self.reply.wait()
        return await super().complete(lease, result)


async def test_drain_deadline_waits_for_an_outcome_being_written() -> None:
    async def quick(ctx: TaskContext, payload: dict[str, int]) -> str:
        return "done"

    task = Task("test.quick", quick, dict)
    queue = SlowCompletions()
    [job] = await queue.enqueue_many([task.job({})])
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=1))  # type: ignore[list-item]
    await pool.start()
    await queue.writing.wait()
    stopping = asyncio.create_task(pool.stop(drain_seconds=0.05))
    await asyncio.sleep(0.3)  # well past the drain deadline: the slot is still writing
    assert not stopping.done(), "stop must wait for the outcome's write, not cancel it"
    queue.reply.set()
    await asyncio.wait_for(stopping, timeout=10)
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.SUCCEEDED
    assert stored.result == "done" and stored.attempts == 1
