"""In-memory queue + WorkerPool: enqueue and processing throughput, enqueue->start latency."""

from __future__ import annotations

import asyncio
import statistics
import time

from gaia.validator.core import Task, TaskContext, TaskRegistry
from gaia.validator.queues.memory import MemoryQueue
from gaia.validator.workers import PoolConfig, WorkerPool

JOBS = 20_000
LATENCY_SAMPLES = 300

Row = dict[str, str | float]


async def noop(ctx: TaskContext, payload: dict[str, int]) -> None:
    return None


NOOP = Task("bench.noop", noop, dict)


async def enqueue_rate(batch: bool) -> float:
    queue = MemoryQueue()
    jobs = [NOOP.job({"i": i}) for i in range(JOBS)]
    started = time.perf_counter()
    if batch:
        for i in range(0, JOBS, 1000):
            await queue.enqueue_many(jobs[i : i + 1000])
    else:
        for job in jobs:
            await queue.enqueue(job)
    return JOBS / (time.perf_counter() - started)


async def processing_rate() -> float:
    queue = MemoryQueue()
    await queue.enqueue_many([NOOP.job({"i": i}) for i in range(JOBS)])
    pool = WorkerPool(queue, TaskRegistry([NOOP]), PoolConfig(concurrency=10), middleware=[])  # type: ignore[list-item]
    started = time.perf_counter()
    await pool.start()
    while queue.active_count():
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    await pool.stop()
    return JOBS / elapsed


async def start_latency() -> tuple[float, float]:
    started_at: dict[int, float] = {}

    async def record(ctx: TaskContext, payload: dict[str, int]) -> None:
        started_at[payload["i"]] = time.perf_counter()

    task = Task("bench.record", record, dict)
    queue = MemoryQueue()
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=10), middleware=[])  # type: ignore[list-item]
    latencies = []
    async with pool:
        await asyncio.sleep(0.05)
        for i in range(LATENCY_SAMPLES):
            sent = time.perf_counter()
            await queue.enqueue(task.job({"i": i}))
            while i not in started_at:
                await asyncio.sleep(0)
            latencies.append((started_at[i] - sent) * 1000)
            await asyncio.sleep(0.002)
    latencies.sort()
    return statistics.median(latencies), latencies[int(0.99 * len(latencies)) - 1]


async def run() -> list[Row]:
    p50, p99 = await start_latency()
    return [
        {
            "backend": "memory",
            "metric": "enqueue one by one",
            "value": await enqueue_rate(False),
            "unit": "jobs/s",
        },
        {
            "backend": "memory",
            "metric": "enqueue in batches of 1000",
            "value": await enqueue_rate(True),
            "unit": "jobs/s",
        },
        {
            "backend": "memory",
            "metric": "process no-op (1 pool x 10 slots)",
            "value": await processing_rate(),
            "unit": "jobs/s",
        },
        {"backend": "memory", "metric": "enqueue->start p50", "value": p50, "unit": "ms"},
        {"backend": "memory", "metric": "enqueue->start p99", "value": p99, "unit": "ms"},
    ]


if __name__ == "__main__":
    from gaia.cli.tables import print_table

    rows = asyncio.run(run())
    print_table("queue_memory", list(rows[0]), [list(r.values()) for r in rows])
