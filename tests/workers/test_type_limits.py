"""Per-type concurrency: a pool runs at most N jobs of a limited type at once, keeps claiming
other types meanwhile, and refuses limits it could not keep."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_pool_chaining import FusingMemoryQueue

from gaia.validator.core import JobStatus, Task, TaskContext, TaskRegistry
from gaia.validator.core.queue import Queue
from gaia.validator.queues import open_queue
from gaia.validator.queues.memory import MemoryQueue
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.type_limits import TypeLimits


@pytest.fixture(params=["memory", "memory-fused", "sqlite"])
async def queue(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Queue]:
    if request.param == "memory":
        opened: Queue = MemoryQueue()
    elif request.param == "memory-fused":
        opened = FusingMemoryQueue()
    else:
        opened = await open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    yield opened
    await opened.close()


async def settled(queue: Queue) -> None:
    while True:
        stats = await queue.stats()
        if not any(stats.total(s) for s in (JobStatus.QUEUED, JobStatus.RUNNING)):
            return
        await asyncio.sleep(0.01)


async def test_a_limited_type_never_exceeds_its_limit_while_others_fill_the_slots(
    queue: Queue,
) -> None:
    running: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    done: Counter[str] = Counter()

    async def tracked(ctx: TaskContext, payload: dict[str, int]) -> None:
        kind = ctx.job.type
        running[kind] += 1
        peak[kind] = max(peak[kind], running[kind])
        await asyncio.sleep(0.005)
        running[kind] -= 1
        done[kind] += 1

    heavy, light = Task("test.heavy", tracked, dict), Task("test.light", tracked, dict)
    jobs = [heavy.job({}) for _ in range(30)] + [light.job({}) for _ in range(60)]
    await queue.enqueue_many(jobs)  # type: ignore[arg-type]
    config = PoolConfig(concurrency=6, idle_wait=0.05, type_limits={"test.heavy": 2})
    async with WorkerPool(queue, TaskRegistry([heavy, light]), config):  # type: ignore[list-item]
        await asyncio.wait_for(settled(queue), 120)
    assert done == {"test.heavy": 30, "test.light": 60}
    assert peak["test.heavy"] == 2, "the limit is reached and never passed"
    assert peak["test.light"] > 2, "the other type still uses the free slots"


async def test_other_types_flow_while_a_limited_type_waits(queue: Queue) -> None:
    release = asyncio.Event()
    light_done = 0

    async def blocking(ctx: TaskContext, payload: dict[str, int]) -> None:
        await release.wait()

    async def light_job(ctx: TaskContext, payload: dict[str, int]) -> None:
        nonlocal light_done
        light_done += 1

    heavy, light = Task("test.heavy", blocking, dict), Task("test.light", light_job, dict)
    first_heavy, second_heavy = heavy.job({}, priority=5), heavy.job({}, priority=5)
    await queue.enqueue_many([first_heavy, second_heavy])
    await queue.enqueue_many([light.job({}) for _ in range(20)])  # type: ignore[arg-type]
    config = PoolConfig(concurrency=4, idle_wait=0.05, type_limits={"test.heavy": 1})
    async with WorkerPool(queue, TaskRegistry([heavy, light]), config):  # type: ignore[list-item]
        while light_done < 20:
            await asyncio.sleep(0.01)
        stats = await queue.stats()
        assert stats.counts["test.heavy"].get(JobStatus.RUNNING) == 1
        assert stats.counts["test.heavy"].get(JobStatus.QUEUED) == 1, "waits for its turn"
        release.set()
        await asyncio.wait_for(settled(queue), 60)
    assert (await queue.stats()).total(JobStatus.SUCCEEDED) == 22


async def noop(ctx: TaskContext, payload: dict[str, int]) -> None:
    return None


@pytest.mark.parametrize(
    ("limits", "subscribe", "message"),
    [
        ({"test.a": 0}, None, "type limit of 'test.a' must be an integer >= 1"),
        ({"test.a": True}, None, "must be an integer"),
        ({"test.zzz": 1}, None, "does not claim: \\['test.zzz'\\]"),
        ({"test.a": 1}, "all", "need an explicit list of job types"),
    ],
)
def test_limits_the_pool_could_not_keep_are_refused(
    limits: dict[str, int], subscribe: str | None, message: str
) -> None:
    registry = TaskRegistry([Task("test.a", noop, dict)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=message):
        WorkerPool(MemoryQueue(), registry, PoolConfig(type_limits=limits), subscribe=subscribe)  # type: ignore[arg-type]


def test_a_claim_asks_for_no_more_than_the_tightest_allowance() -> None:
    limits = TypeLimits({"a": 2, "b": 5}, ["a", "b", "c"])
    assert limits.allowance(["a", "b", "c"], 10) == 2
    limits.began("a")
    assert limits.allowance(["a", "b", "c"], 10) == 1
    limits.began("a")
    assert limits.claimable(["a", "b", "c"]) == ["b", "c"]
    assert limits.claimable(["a", "b", "c"], finishing="a") == ["a", "b", "c"]
    assert limits.allowance(["b", "c"], 10) == 5
    assert limits.ended("a") and not limits.ended("c")
    assert limits.claimable(["a", "b", "c"]) == ["a", "b", "c"]
