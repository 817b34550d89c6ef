"""SQLite queue: enqueue and processing throughput, enqueue->start latency, idle CPU.

``python -m benchmarks.queue_sqlite`` (from the repo root). Each measurement uses a fresh
database file in a temporary directory (or under $GAIA_BENCH_SQLITE_DIR, to measure another
disk). Rows are given for ``synchronous=full`` (the default: acknowledged writes survive power
loss) and ``synchronous=normal`` (survive a process crash only).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from gaia.validator.core import Job, Task, TaskContext, TaskRegistry, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.sqlite import SqliteQueue

ENQUEUE_ONE_JOBS = 3_000
ENQUEUE_BATCH_JOBS = 50_000
BATCH = 1_000
PROCESS_JOBS = 5_000
LATENCY_SAMPLES = 200
IDLE_SECONDS = 5.0
PROCESSES = 3
CLAIMERS = 10

Row = dict[str, str | float]


def _job(i: int) -> Job:
    return new_job("bench.noop", {"i": i})


@asynccontextmanager
async def fresh_queue(synchronous: str, name: str = "queue.db") -> AsyncIterator[SqliteQueue]:
    with tempfile.TemporaryDirectory(dir=os.environ.get("GAIA_BENCH_SQLITE_DIR")) as tmp:
        queue = await open_queue(f"sqlite:///{Path(tmp) / name}?synchronous={synchronous}")
        assert isinstance(queue, SqliteQueue)
        try:
            yield queue
        finally:
            await queue.close()


async def enqueue_rate(synchronous: str, batch: bool) -> float:
    async with fresh_queue(synchronous) as queue:
        count = ENQUEUE_BATCH_JOBS if batch else ENQUEUE_ONE_JOBS
        jobs = [_job(i) for i in range(count)]
        started = time.perf_counter()
        if batch:
            for i in range(0, count, BATCH):
                await queue.enqueue_many(jobs[i : i + BATCH])
        else:
            for job in jobs:
                await queue.enqueue(job)
        return count / (time.perf_counter() - started)


async def _claim_complete_loop(queue: SqliteQueue, worker: str) -> int:
    done = 0
    while (lease := await queue.claim(worker)) is not None:
        await queue.complete(lease)
        done += 1
    return done


async def claim_complete_rate(synchronous: str) -> float:
    """10 concurrent claimers in one process, each claim + complete until the queue is empty."""
    async with fresh_queue(synchronous) as queue:
        await queue.enqueue_many([_job(i) for i in range(PROCESS_JOBS)])
        started = time.perf_counter()
        done = await asyncio.gather(
            *(_claim_complete_loop(queue, f"w{n}") for n in range(CLAIMERS))
        )
        elapsed = time.perf_counter() - started
        assert sum(done) == PROCESS_JOBS
        return PROCESS_JOBS / elapsed


async def pool_rate(synchronous: str) -> float:
    """The WorkerPool (1 pool x 10 slots, no middleware) on no-op jobs."""
    from gaia.validator.workers import PoolConfig, WorkerPool

    finished = asyncio.Event()
    done = 0

    async def count(ctx: TaskContext, payload: dict[str, int]) -> None:
        nonlocal done
        done += 1
        if done == PROCESS_JOBS:
            finished.set()

    task = Task("bench.noop", count, dict)
    async with fresh_queue(synchronous) as queue:
        await queue.enqueue_many([task.job({"i": i}) for i in range(PROCESS_JOBS)])
        registry = TaskRegistry()
        registry.add(task)
        pool = WorkerPool(queue, registry, PoolConfig(concurrency=CLAIMERS), middleware=[])
        started = time.perf_counter()
        await pool.start()
        await finished.wait()
        elapsed = time.perf_counter() - started
        await pool.stop()
        return PROCESS_JOBS / elapsed


def _process_worker(
    url: str, worker: str, ready: multiprocessing.Queue[int], results: multiprocessing.Queue[int]
) -> None:
    async def main() -> int:
        queue = await open_queue(url)
        try:
            assert await queue.claim(worker, wait=0.01) is None  # connected and listening
            ready.put(0)
            first = await queue.claim(worker, wait=60.0)  # parked until the jobs arrive
            assert first is not None
            await queue.complete(first)
            counts = await asyncio.gather(
                *(_claim_complete_loop(queue, f"{worker}-{n}") for n in range(CLAIMERS))  # type: ignore[arg-type]
            )
        finally:
            await queue.close()
        return 1 + sum(counts)

    results.put(asyncio.run(main()))


async def multi_process_rate(synchronous: str) -> float:
    """3 processes x 10 claimers on one file, all parked on the empty queue when the jobs
    arrive in one batch; checks every job was claimed exactly once."""
    async with fresh_queue(synchronous) as queue:
        context = multiprocessing.get_context("spawn")
        ready: multiprocessing.Queue[int] = context.Queue()
        results: multiprocessing.Queue[int] = context.Queue()
        workers = [
            context.Process(target=_process_worker, args=(queue.url, f"p{n}", ready, results))
            for n in range(PROCESSES)
        ]
        for worker in workers:
            worker.start()
        await asyncio.to_thread(lambda: [ready.get() for _ in workers])
        await asyncio.sleep(0.2)  # let every child park in its wait
        started = time.perf_counter()
        await queue.enqueue_many([_job(i) for i in range(PROCESS_JOBS)])
        total = sum(await asyncio.to_thread(lambda: [results.get() for _ in workers]))
        elapsed = time.perf_counter() - started
        for worker in workers:
            worker.join()
        stats = await queue.stats()
        assert total == PROCESS_JOBS, f"claimed {total} of {PROCESS_JOBS}"
        assert stats.counts["bench.noop"].get("succeeded") == PROCESS_JOBS  # type: ignore[call-overload]
        return PROCESS_JOBS / elapsed


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    latencies.sort()
    return statistics.median(latencies), latencies[max(0, int(0.99 * len(latencies)) - 1)]


async def in_process_latency(synchronous: str) -> tuple[float, float]:
    """A claimer waiting on an idle queue; the producer enqueues from the same process."""
    async with fresh_queue(synchronous) as queue:
        latencies: list[float] = []
        for i in range(LATENCY_SAMPLES):
            claimer = asyncio.create_task(queue.claim("w", wait=5.0))
            await asyncio.sleep(0.003)  # let it find the queue empty and park
            sent = time.perf_counter()
            await queue.enqueue(_job(i))
            lease = await claimer
            latencies.append((time.perf_counter() - sent) * 1000)
            assert lease is not None
            await queue.complete(lease)
        return _percentiles(latencies)


def _latency_claimer(url: str, samples: int, ready: multiprocessing.Queue[float]) -> None:
    async def main() -> None:
        queue = await open_queue(url)
        try:
            for _ in range(samples):
                ready.put(0.0)
                lease = None
                while lease is None:
                    lease = await queue.claim("remote", wait=10.0)
                started = time.monotonic()  # CLOCK_MONOTONIC is system-wide on Linux
                sent = lease.job.payload["sent"]
                assert isinstance(sent, float)
                ready.put(started - sent)
                await queue.complete(lease)
        finally:
            await queue.close()

    asyncio.run(main())


async def cross_process_latency(synchronous: str) -> tuple[float, float]:
    """A claimer waiting in another process (woken through the FIFO doorbell)."""
    async with fresh_queue(synchronous) as queue:
        context = multiprocessing.get_context("spawn")
        channel: multiprocessing.Queue[float] = context.Queue()
        child = context.Process(target=_latency_claimer, args=(queue.url, LATENCY_SAMPLES, channel))
        child.start()
        latencies = []
        for _ in range(LATENCY_SAMPLES):
            await asyncio.to_thread(channel.get)  # the child is about to wait
            await asyncio.sleep(0.005)
            await queue.enqueue(new_job("bench.noop", {"sent": time.monotonic()}))
            latencies.append(await asyncio.to_thread(channel.get) * 1000)
        await asyncio.to_thread(child.join)
        return _percentiles(latencies)


async def idle_cpu() -> float:
    """CPU used by this process while one claimer waits IDLE_SECONDS on an empty queue (%)."""
    async with fresh_queue("full") as queue:
        await queue.claim("w", wait=0.1)  # warm up: connection open, doorbell listening
        wall, cpu = time.perf_counter(), time.process_time()
        assert await queue.claim("w", wait=IDLE_SECONDS) is None
        return 100 * (time.process_time() - cpu) / (time.perf_counter() - wall)


async def run() -> list[Row]:
    rows: list[Row] = []

    def add(metric: str, value: float, unit: str, synchronous: str) -> None:
        rows.append(
            {"backend": f"sqlite ({synchronous})", "metric": metric, "value": value, "unit": unit}
        )

    for synchronous in ("full", "normal"):
        add("enqueue one by one", await enqueue_rate(synchronous, False), "jobs/s", synchronous)
        add(
            f"enqueue in batches of {BATCH}",
            await enqueue_rate(synchronous, True),
            "jobs/s",
            synchronous,
        )
        add(
            f"claim+complete ({CLAIMERS} claimers, 1 process)",
            await claim_complete_rate(synchronous),
            "jobs/s",
            synchronous,
        )
        add(
            f"process no-op (WorkerPool 1 x {CLAIMERS} slots)",
            await pool_rate(synchronous),
            "jobs/s",
            synchronous,
        )
        add(
            f"claim+complete ({PROCESSES} processes x {CLAIMERS} claimers)",
            await multi_process_rate(synchronous),
            "jobs/s",
            synchronous,
        )
        p50, p99 = await in_process_latency(synchronous)
        add("enqueue->start p50, same process", p50, "ms", synchronous)
        add("enqueue->start p99, same process", p99, "ms", synchronous)
        p50, p99 = await cross_process_latency(synchronous)
        add("enqueue->start p50, other process", p50, "ms", synchronous)
        add("enqueue->start p99, other process", p99, "ms", synchronous)
    add(f"CPU of an idle waiting claimer ({IDLE_SECONDS:.0f} s)", await idle_cpu(), "%", "full")
    return rows


if __name__ == "__main__":
    from gaia.cli.tables import print_table

    result = asyncio.run(run())
    print_table("queue_sqlite", list(result[0]), [list(r.values()) for r in result])
