"""Redis queue benchmark, with the peers saq and arq on the same server in the same run.

Run from the repository root: ``python -m benchmarks.queue_redis``. It starts a throwaway
redis-server (AOF on, ``appendfsync everysec``) unless GAIA_BENCH_REDIS_URL names one; each
system gets its own logical database, flushed before each measurement.

Metrics (no-op jobs, one process):
- enqueue jobs/s one by one, and in batches of 1,000 (the peers have no batch call);
- processing jobs/s: the queue is filled with PROCESS_JOBS jobs, then 10 concurrent claimers
  drain it. Ours: ``claim`` + ``complete`` per job, ``claim_many(10)`` + ``complete`` per
  job, ``complete_and_claim`` per job (the WorkerPool's way: one round trip per job), and the
  WorkerPool itself (1 x 10 slots: what ``gaia worker`` runs, task dispatch included);
  saq: ``Worker(concurrency=10)``; arq: ``Worker(max_jobs=10, poll_delay=0.01, burst=True)``
  (arq's default 0.5 s poll would cap it far lower). The systems take turns for ROUNDS rounds
  and each reports its median, so a machine whose load drifts treats all alike;
- enqueue->start latency p50/p99 on an idle queue with one waiting claimer (ours).
Peers are optional: one that is not installed is reported as skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from urllib.parse import urlsplit, urlunsplit

from gaia.validator.core.job import Job, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.redis import RedisQueue

Row = dict[str, str | float]
URL_VARIABLE = "GAIA_BENCH_REDIS_URL"
SINGLE_JOBS = 3_000
BATCH_JOBS = 50_000
BATCH_SIZE = 1_000
PROCESS_JOBS = 5_000
ROUNDS = 3
CLAIMERS = 10
LATENCY_SAMPLES = 300
PEER_PREFILL_CONCURRENCY = 50
SIDES = ("client", "server")


def row(backend: str, metric: str, value: float, unit: str, note: str = "") -> Row:
    entry: Row = {"backend": backend, "metric": metric, "value": round(value, 3), "unit": unit}
    if note:
        entry["note"] = note
    return entry


def database_url(url: str, db: int) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", "", ""))


async def flush(url: str) -> None:
    from redis.asyncio import Redis

    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()


def jobs(count: int) -> list[Job]:
    return [new_job("bench.noop", {"i": i}) for i in range(count)]


def _since(began: float) -> float:
    return time.perf_counter() - began


class Measure:
    """Wall time, and CPU time of this process and of redis-server, over one drain."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.wall = self.client = self.server = 0.0

    async def _server_cpu(self) -> float:
        from redis.asyncio import Redis

        client = Redis.from_url(self.url)
        try:
            info = await client.info("cpu")
        finally:
            await client.aclose()
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    async def start(self) -> None:
        self.server = -await self._server_cpu()
        self.client = -time.process_time()
        self.wall = -time.perf_counter()

    async def stop(self) -> None:
        self.wall += time.perf_counter()
        self.client += time.process_time()
        self.server += await self._server_cpu()


Drain = Callable[[str], Awaitable[Measure]]


# -- ours ------------------------------------------------------------------------------------
async def our_enqueue_and_latency(url: str) -> list[Row]:
    await flush(url)
    queue = await open_queue(f"{url}?queue=bench")
    assert isinstance(queue, RedisQueue)
    rows: list[Row] = []
    try:
        singles = jobs(SINGLE_JOBS)
        began = time.perf_counter()
        for job in singles:
            await queue.enqueue(job)
        rows.append(row("gaia", "enqueue one by one", SINGLE_JOBS / _since(began), "jobs/s"))
        await flush(url)

        runs: list[Measure] = []
        for _ in range(ROUNDS):  # the server's share varies most from run to run: medians
            batch = jobs(BATCH_JOBS)
            measure = Measure(url)
            await measure.start()
            for start in range(0, BATCH_JOBS, BATCH_SIZE):
                await queue.enqueue_many(batch[start : start + BATCH_SIZE])
            await measure.stop()
            runs.append(measure)
            await flush(url)
        rows += medians("gaia", f"enqueue batches of {BATCH_SIZE}", BATCH_JOBS, runs)

        p50, p99 = await _latency(queue)
        rows.append(row("gaia", "enqueue->start p50 (idle queue)", p50 * 1000, "ms"))
        rows.append(row("gaia", "enqueue->start p99 (idle queue)", p99 * 1000, "ms"))
    finally:
        await queue.close()
    return rows


def our_drain(claim_count: int, fused: bool = False) -> Drain:
    """Ours: each claimer claims ``claim_count`` jobs and completes them one by one; ``fused``:
    each claimer claims one job, then loops ``complete_and_claim`` (as the WorkerPool does)."""

    async def drain(url: str) -> Measure:
        await flush(url)
        queue = await open_queue(f"{url}?queue=bench")
        assert isinstance(queue, RedisQueue)
        done = 0
        measure = Measure(url)

        async def claimer(name: str) -> None:
            nonlocal done
            if fused:
                leases = await queue.claim_many(name, 1)
                while leases:
                    _, leases = await queue.complete_and_claim(leases[0])
                    done += 1
                return
            while True:
                leases = await queue.claim_many(name, claim_count)
                if not leases:
                    return
                for lease in leases:
                    await queue.complete(lease)
                done += len(leases)

        try:
            for start in range(0, PROCESS_JOBS, BATCH_SIZE):
                await queue.enqueue_many(jobs(min(BATCH_SIZE, PROCESS_JOBS - start)))
            await measure.start()
            await asyncio.gather(*(claimer(f"bench-{n}") for n in range(CLAIMERS)))
            await measure.stop()
        finally:
            await queue.close()
        assert done == PROCESS_JOBS, f"drained {done} of {PROCESS_JOBS} jobs"
        return measure

    return drain


async def _latency(queue: RedisQueue) -> tuple[float, float]:
    samples: list[float] = []
    sent: dict[str, float] = {}

    async def claimer() -> None:
        while len(samples) < LATENCY_SAMPLES:
            lease = await queue.claim("bench-latency", wait=5.0)
            if lease is None:
                raise RuntimeError("latency claimer woke with no job")
            samples.append(time.perf_counter() - sent[lease.job_id])
            await queue.complete(lease)

    waiting = asyncio.create_task(claimer())
    for _ in range(LATENCY_SAMPLES):
        await asyncio.sleep(0.005)  # let the claimer settle into its blocking wait
        job = new_job("bench.noop", {})
        sent[job.id] = time.perf_counter()
        await queue.enqueue(job)
        while len(samples) < len(sent) and not waiting.done():
            await asyncio.sleep(0.001)
    await waiting
    return statistics.median(samples), statistics.quantiles(samples, n=100)[98]


# -- peers -----------------------------------------------------------------------------------
async def saq_drain(url: str) -> Measure:
    from saq import Queue as SaqQueue
    from saq import Worker as SaqWorker

    await flush(url)
    queue = SaqQueue.from_url(url, name="bench")
    await queue.connect()
    started = 0
    all_started = asyncio.Event()

    async def noop(ctx: object) -> None:
        nonlocal started
        started += 1
        if started == PROCESS_JOBS:
            all_started.set()

    try:
        await _concurrently(PROCESS_JOBS, lambda: queue.enqueue("noop"))
        worker = SaqWorker(queue, functions=[("noop", noop)], concurrency=CLAIMERS)
        measure = Measure(url)
        await measure.start()
        running = asyncio.create_task(worker.start())
        await all_started.wait()
        while await queue.count("incomplete"):
            await asyncio.sleep(0.005)
        await measure.stop()
        await worker.stop()
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await queue.disconnect()
    return measure


async def arq_noop(ctx: object) -> None:
    """arq names a job by its function's qualified name: a module-level no-op."""


async def arq_drain(url: str) -> Measure:
    from arq import create_pool
    from arq.connections import RedisSettings
    from arq.worker import Worker as ArqWorker

    await flush(url)
    pool = await create_pool(RedisSettings.from_dsn(url))
    try:
        await _concurrently(PROCESS_JOBS, lambda: pool.enqueue_job(arq_noop.__qualname__))
        worker = ArqWorker(
            functions=[arq_noop],
            redis_pool=pool,
            burst=True,
            max_jobs=CLAIMERS,
            poll_delay=0.01,
            handle_signals=False,
            log_results=False,
        )
        measure = Measure(url)
        await measure.start()
        await worker.main()
        await measure.stop()
        completed = worker.jobs_complete
        await worker.close()
    finally:
        await pool.aclose()
    if completed != PROCESS_JOBS:
        raise RuntimeError(f"arq completed {completed} of {PROCESS_JOBS} jobs")
    return measure


async def peer_enqueue(url: str) -> list[Row]:
    """The peers' one-by-one enqueue rates, for comparison with ours."""
    rows: list[Row] = []
    with contextlib.suppress(ImportError):
        from saq import Queue as SaqQueue

        await flush(url)
        queue = SaqQueue.from_url(url, name="bench")
        await queue.connect()
        began = time.perf_counter()
        for _ in range(SINGLE_JOBS):
            await queue.enqueue("noop")
        rows.append(row("saq", "enqueue one by one", SINGLE_JOBS / _since(began), "jobs/s"))
        await queue.disconnect()
    with contextlib.suppress(ImportError):
        from arq import create_pool
        from arq.connections import RedisSettings

        await flush(url)
        pool = await create_pool(RedisSettings.from_dsn(url))
        began = time.perf_counter()
        for _ in range(SINGLE_JOBS):
            await pool.enqueue_job(arq_noop.__qualname__)
        rows.append(row("arq", "enqueue one by one", SINGLE_JOBS / _since(began), "jobs/s"))
        await pool.aclose()
    return rows


async def _concurrently(count: int, make: Callable[[], Awaitable[object]]) -> None:
    for start in range(0, count, PEER_PREFILL_CONCURRENCY):
        await asyncio.gather(*(make() for _ in range(min(PEER_PREFILL_CONCURRENCY, count - start))))


def _installed(module: str) -> bool:
    try:
        __import__(module)
    except ImportError:
        return False
    return True


# -- running ---------------------------------------------------------------------------------
async def pool_drain(url: str) -> Measure:
    """Ours through the WorkerPool (1 pool x 10 slots, no middleware but a completion counter):
    what ``gaia worker`` runs, the like-for-like match for the peers' workers."""
    from gaia.validator.core import Task, TaskContext, TaskRegistry
    from gaia.validator.core.outcomes import TaskResult
    from gaia.validator.workers import PoolConfig, WorkerPool
    from gaia.validator.workers.middleware.base import Middleware

    await flush(url)
    queue = await open_queue(f"{url}?queue=bench")
    finished = asyncio.Event()
    done = 0

    class Settled(Middleware):
        def settled(self, result: TaskResult) -> None:
            nonlocal done
            done += 1
            if done == PROCESS_JOBS:
                finished.set()

    async def noop(ctx: TaskContext, payload: dict[str, int]) -> None:
        return None

    registry = TaskRegistry([Task("bench.noop", noop, dict)])  # type: ignore[arg-type]
    measure = Measure(url)
    try:
        for start in range(0, PROCESS_JOBS, BATCH_SIZE):
            await queue.enqueue_many(jobs(min(BATCH_SIZE, PROCESS_JOBS - start)))
        pool = WorkerPool(queue, registry, PoolConfig(concurrency=CLAIMERS), middleware=[Settled()])
        await measure.start()
        async with pool:
            await finished.wait()
            await measure.stop()
    finally:
        await queue.close()
    return measure


async def processing(url: str) -> list[Row]:
    """Every system drains PROCESS_JOBS jobs, taking turns for ROUNDS rounds; medians."""
    contenders: list[tuple[str, str, Drain]] = [
        ("gaia", f"processing, {CLAIMERS} claimers, claim + complete", our_drain(1)),
        ("gaia", f"processing, {CLAIMERS} claimers, claim_many(10) + complete", our_drain(10)),
        ("gaia", f"processing, {CLAIMERS} claimers, complete_and_claim", our_drain(1, True)),
        ("gaia", f"processing, WorkerPool 1 x {CLAIMERS} slots", pool_drain),
    ]
    if _installed("saq"):
        contenders.append(("saq", f"processing, Worker concurrency {CLAIMERS}", saq_drain))
    if _installed("arq"):
        contenders.append(("arq", f"processing, Worker max_jobs {CLAIMERS}", arq_drain))
    runs: dict[str, list[Measure]] = {metric: [] for _, metric, _ in contenders}
    for _ in range(ROUNDS):
        for _, metric, drain in contenders:
            runs[metric].append(await drain(url))
    rows: list[Row] = []
    for backend, metric, _ in contenders:
        rows += medians(backend, metric, PROCESS_JOBS, runs[metric])
    for peer in ("saq", "arq"):
        if not _installed(peer):
            rows.append(row(peer, "processing", 0.0, "jobs/s", f"skipped: {peer} not installed"))
    return rows + ratios(rows)


def medians(backend: str, metric: str, count: int, runs: list[Measure]) -> list[Row]:
    """The median rate of ``runs`` of ``count`` jobs each, and the median client and server
    CPU per job."""
    rates = [count / run.wall for run in runs]
    shown = ", ".join(f"{rate:.0f}" for rate in rates)
    rows = [row(backend, metric, statistics.median(rates), "jobs/s", f"median of {shown}")]
    for side in SIDES:
        cpu = statistics.median(getattr(run, side) for run in runs) / count
        rows.append(row(backend, f"{metric}: {side} CPU per job", cpu * 1e6, "us"))
    return rows


def ratios(rows: list[Row]) -> list[Row]:
    """Ours over each peer: jobs/s (the issue's target), and total CPU per job (theirs/ours)."""
    by_metric = {(str(r["backend"]), str(r["metric"])): float(r["value"]) for r in rows}
    ours = [
        m for (b, m) in by_metric if b == "gaia" and m.startswith("processing") and ":" not in m
    ]
    out: list[Row] = []
    for peer in ("saq", "arq"):
        theirs = [m for (b, m) in by_metric if b == peer and m.startswith("processing, ")]
        theirs = [m for m in theirs if ":" not in m]
        if not theirs or by_metric[(peer, theirs[0])] <= 0:
            continue
        peer_metric = theirs[0]
        peer_cpu = sum(by_metric[(peer, f"{peer_metric}: {side} CPU per job")] for side in SIDES)
        for metric in ours:
            how = metric.rsplit(", ", 1)[-1]
            speed = by_metric[("gaia", metric)] / by_metric[(peer, peer_metric)]
            our_cpu = sum(by_metric[("gaia", f"{metric}: {side} CPU per job")] for side in SIDES)
            out.append(row("gaia", f"ratio vs {peer}, jobs/s ({how})", speed, "x", "target >= 5x"))
            out.append(
                row("gaia", f"ratio vs {peer}, CPU per job ({how})", peer_cpu / our_cpu, "x")
            )
    return out


@contextlib.asynccontextmanager
async def redis_server() -> AsyncIterator[str]:
    url = os.environ.get(URL_VARIABLE, "").strip()
    if url:
        yield url
        return
    from tests.servers.redis import RedisServer

    server = RedisServer(appendfsync="everysec")
    await asyncio.to_thread(server.start)
    try:
        yield server.url
    finally:
        await asyncio.to_thread(server.close)


async def run() -> list[dict[str, str | float]]:
    async with redis_server() as url:
        rows = await our_enqueue_and_latency(database_url(url, 1))
        rows += await peer_enqueue(database_url(url, 2))
        rows += await processing(database_url(url, 3))
        for entry in rows:
            entry.setdefault("settings", "redis AOF appendfsync everysec, 1 client process")
        return list(rows)


def print_table(rows: list[Row]) -> None:
    print(f"{'backend':8} {'metric':56} {'value':>12} unit    note")
    for entry in rows:
        print(
            f"{entry['backend']!s:8} {entry['metric']!s:56} {float(entry['value']):>12,.2f} "
            f"{entry['unit']!s:7} {entry.get('note', '')}"
        )


if __name__ == "__main__":
    import logging

    logging.getLogger("saq").setLevel(logging.ERROR)  # its shutdown notices are not results
    print_table(asyncio.run(run()))
