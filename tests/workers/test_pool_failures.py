"""WorkerPool when things around a job go wrong: a handler's own CancelledError, a write that
never returns, a failing hand-back or hook, a stop that is itself cancelled, a lease lost after
the handler finished. The pool must neither loop, hang, nor stop half-way."""

from __future__ import annotations

import asyncio
import time

from gaia.validator.core import (
    Job,
    JobStatus,
    RetryPolicy,
    Task,
    TaskContext,
    TaskRegistry,
)
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease
from gaia.validator.queues.memory import MemoryQueue
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.heartbeats import Heartbeats
from gaia.validator.workers.middleware.base import Middleware

FAST_RETRY = RetryPolicy(max_attempts=3, base_delay=0.0, max_delay=0.0)


async def ended(awaitable: asyncio.Future[None], within: float = 60.0) -> bool:
    """Whether ``awaitable`` finished within ``within`` s (a liveness bound, not a speed goal)."""
    done, _ = await asyncio.wait([awaitable], timeout=within)
    return bool(done)


async def settled(queue: MemoryQueue) -> None:
    while queue.active_count():
        await asyncio.sleep(0.01)


async def test_a_handler_raising_cancelled_error_itself_is_a_failed_attempt() -> None:
    runs = 0

    async def awaits_a_cancelled_future(ctx: TaskContext, payload: dict[str, int]) -> None:
        nonlocal runs
        runs += 1
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.cancel()
        await future  # CancelledError, though nobody cancelled this job

    task = Task("test.poison", awaits_a_cancelled_future, dict, retry=FAST_RETRY)
    queue = MemoryQueue()
    [job] = await queue.enqueue_many([task.job({})])
    async with WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=1)):  # type: ignore[list-item]
        await asyncio.wait_for(settled(queue), 60)
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.DEAD
    assert stored.attempts == 3 and runs == 3
    assert stored.error is not None and "CancelledError" in stored.error.message


class NeverAnswers(MemoryQueue):
    """A queue whose completions are never answered (a black-holed database)."""

    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def quick(ctx: TaskContext, payload: dict[str, int]) -> str:
    return "done"


async def test_stop_ends_when_an_outcome_write_never_returns() -> None:
    task = Task("test.quick", quick, dict)
    queue = NeverAnswers()
    [job] = await queue.enqueue_many([task.job({})])
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=1, lease_seconds=0.5))  # type: ignore[list-item]
    await pool.start()
    while (await queue.get(job.id)).status is not JobStatus.RUNNING:  # type: ignore[union-attr]
        await asyncio.sleep(0.01)
    await asyncio.sleep(0.1)  # the handler has returned; its write hangs
    assert await ended(asyncio.ensure_future(pool.stop(drain_seconds=0.05)))
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.RUNNING  # reclaimed when it expires


async def test_a_cancelled_stop_ends_cancelled_and_leaves_the_pool_stopped() -> None:
    task = Task("test.quick", quick, dict)
    queue = NeverAnswers()
    await queue.enqueue_many([task.job({})])
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=1, lease_seconds=600))  # type: ignore[list-item]
    await pool.start()
    await asyncio.sleep(0.2)  # the slot waits on its write, which a stop waits for
    stopping = asyncio.ensure_future(pool.stop(drain_seconds=0.0))
    await asyncio.sleep(0.2)
    assert not stopping.done()
    stopping.cancel()
    assert await ended(stopping)
    assert stopping.cancelled(), "a cancel of stop() must reach its caller"
    assert await ended(asyncio.ensure_future(pool.wait_stopped()))


class ReleaseFails(MemoryQueue):
    async def release(self, lease: Lease) -> Job:
        raise ConnectionError("database unreachable")


async def test_a_hand_back_that_fails_does_not_break_the_stop() -> None:
    async def forever(ctx: TaskContext, payload: dict[str, int]) -> None:
        await asyncio.sleep(3600)

    task = Task("test.forever", forever, dict)
    queue = ReleaseFails()
    [job] = await queue.enqueue_many([task.job({})])
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=1))  # type: ignore[list-item]
    await pool.start()
    while pool.running_jobs == 0:
        await asyncio.sleep(0.01)
    assert await ended(asyncio.ensure_future(pool.stop(drain_seconds=0.05)))
    assert await ended(asyncio.ensure_future(pool.wait_stopped()))
    assert pool.running_jobs == 0
    stored = await queue.get(job.id)
    assert stored is not None and stored.status is JobStatus.RUNNING  # its lease will expire


class ReapedRaises(Middleware):
    def __init__(self) -> None:
        self.calls = 0

    def reaped(self, count: int) -> None:
        self.calls += 1
        raise RuntimeError("metrics backend down")


async def test_a_failing_reaped_hook_does_not_stop_the_reaper() -> None:
    now = time.time() + 60.0  # ahead of the jobs' creation times: they are due at once
    queue = MemoryQueue(clock=lambda: now)
    other = Task("test.other", quick, dict)
    hook = ReapedRaises()
    pool = WorkerPool(
        queue,
        TaskRegistry([Task("test.quick", quick, dict)]),  # type: ignore[list-item]
        PoolConfig(concurrency=1, reap_interval=0.05),
        middleware=[hook],
    )
    async with pool:
        for _ in range(2):
            [job] = await queue.enqueue_many([other.job({})])
            assert await queue.claim("ghost", types=["test.other"], lease_seconds=1.0) is not None
            now += 2.0  # the ghost's lease expires: the pool's reaper puts the job back
            while (await queue.get(job.id)).status is JobStatus.RUNNING:  # type: ignore[union-attr]
                await asyncio.sleep(0.01)
            await queue.cancel(job.id)
    assert hook.calls == 2


async def test_a_lease_lost_after_the_handler_finished_does_not_cancel_the_slot() -> None:
    class Victim:
        cancelled = False

        def cancel(self, msg: str | None = None) -> bool:
            self.cancelled = True
            return True

    queue = MemoryQueue()
    [job] = await queue.enqueue_many([Task("test.quick", quick, dict).job({})])
    lease = await queue.claim("w")
    assert lease is not None
    beats = Heartbeats(queue, lease_seconds=30.0)
    victim = Victim()
    held = beats.hold(lease, victim, asyncio.Event())
    beats.drop(held)  # the handler returned; the slot is writing its outcome
    await queue.cancel(job.id)  # the lease is lost meanwhile
    await beats.beat(held)  # a heartbeat already under way learns of it
    assert held.lost and not victim.cancelled and not held.cancel_event.is_set()


async def test_a_write_unanswered_for_a_lease_is_given_up_and_frees_its_slot() -> None:
    task = Task("test.quick", quick, dict)
    queue = NeverAnswers()
    first, second = await queue.enqueue_many([task.job({}), task.job({})])
    config = PoolConfig(concurrency=1, lease_seconds=0.3, reap_interval=0.05, idle_wait=0.05)
    pool = WorkerPool(queue, TaskRegistry([task]), config)  # type: ignore[list-item]
    await pool.start()
    try:
        # The only slot's write hangs; once given up, the slot takes the other job.
        while (await queue.get(second.id)).attempts == 0:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
    finally:
        assert await ended(asyncio.ensure_future(pool.stop(drain_seconds=0.05)))
    assert (await queue.get(first.id)).attempts >= 1  # type: ignore[union-attr]
