"""Prometheus metrics middleware and queue-depth sampler, read back from a private registry."""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry

from gaia.validator.core import JobStatus, RetryPolicy, Task, TaskContext, TaskRegistry
from gaia.validator.queues.memory import MemoryQueue
from gaia.validator.workers import PoolConfig, WorkerPool
from gaia.validator.workers.middleware import default_middleware
from gaia.validator.workers.middleware.metrics import Metrics, QueueDepthSampler


async def test_metrics_count_outcomes_and_durations() -> None:
    async def work(ctx: TaskContext, payload: dict[str, bool]) -> str:
        if payload["fail"]:
            raise RuntimeError("no")
        return "ok"

    task = Task("test.work", work, dict, retry=RetryPolicy(max_attempts=2, base_delay=0))
    registry = CollectorRegistry()
    metrics = Metrics(registry=registry)
    queue = MemoryQueue()
    await queue.enqueue_many(
        [task.job({"fail": False}) for _ in range(5)] + [task.job({"fail": True})]
    )
    pool = WorkerPool(
        queue,
        TaskRegistry([task]),
        PoolConfig(idle_wait=0.05),  # type: ignore[list-item]
        middleware=[*default_middleware(), metrics],
    )
    async with pool:
        while queue.active_count():
            await asyncio.sleep(0.01)
    sample = registry.get_sample_value
    assert sample("gaia_jobs_attempts_total", {"type": "test.work", "outcome": "succeeded"}) == 5
    assert sample("gaia_jobs_attempts_total", {"type": "test.work", "outcome": "retry"}) == 1
    assert sample("gaia_jobs_attempts_total", {"type": "test.work", "outcome": "dead"}) == 1
    assert sample("gaia_job_duration_seconds_count", {"type": "test.work"}) == 7
    assert sample("gaia_jobs_running", {"type": "test.work"}) == 0


async def test_queue_depth_sampler_reports_counts() -> None:
    async def noop(ctx: TaskContext, payload: dict[str, int]) -> None:
        return None

    task = Task("test.noop", noop, dict)
    queue = MemoryQueue()
    await queue.enqueue_many([task.job({}) for _ in range(3)])
    registry = CollectorRegistry()
    sampler = QueueDepthSampler(queue, registry=registry)
    await sampler.sample()
    assert (
        registry.get_sample_value("gaia_queue_jobs", {"type": "test.noop", "status": "queued"}) == 3
    )
    assert registry.get_sample_value("gaia_queue_expired_leases") == 0


async def test_lease_reclaims_are_counted() -> None:
    async def noop(ctx: TaskContext, payload: dict[str, int]) -> None:
        return None

    now = time.time() + 60.0  # ahead of the job's creation time: it is due at once
    queue = MemoryQueue(clock=lambda: now)
    orphan = Task("test.orphan", noop, dict)
    [job] = await queue.enqueue_many([orphan.job({})])
    assert await queue.claim("dead-worker", lease_seconds=1.0) is not None
    now += 2.0  # the dead worker's lease has expired
    registry = CollectorRegistry()
    pool = WorkerPool(
        queue,
        TaskRegistry([Task("test.other", noop, dict)]),  # type: ignore[list-item]
        PoolConfig(idle_wait=0.05, reap_interval=0.05),
        middleware=[Metrics(registry=registry)],
    )
    async with pool:
        while (await queue.get(job.id)).status is JobStatus.RUNNING:  # type: ignore[union-attr]
            await asyncio.sleep(0.01)
    assert registry.get_sample_value("gaia_lease_reclaims_total") == 1


async def test_every_pool_has_its_own_worker_id() -> None:
    """A restarted worker never shares its dead predecessor's identity, so it claims at once
    instead of waiting for the old leases (production lesson: worker ids per process start)."""
    queue = MemoryQueue()
    registry = TaskRegistry([])
    ids = {WorkerPool(queue, registry).worker_id for _ in range(50)}
    assert len(ids) == 50 and all(worker_id.startswith("worker-") for worker_id in ids)
