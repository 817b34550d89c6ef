"""PostgreSQL queue against its peers (pgqueuer, procrastinate, saq), same server, same run.

``python -m benchmarks.queue_postgres`` (from the repo root). Starts a throwaway PostgreSQL
(tests/servers; fsync off unless GAIA_BENCH_PG_FSYNC=on) or uses $GAIA_BENCH_POSTGRES_URL (a
superuser URL: each measurement creates and drops its own database). Every system processes the
same N no-op jobs, enqueued first, with 10 concurrent slots in one process; the processing rates
are the median of REPEATS runs, ours and pgqueuer's interleaved, since the machine may be shared.
Peers are optional (``pip install pgqueuer procrastinate saq[postgres]``): a missing one is
reported, not fatal.

Also measured: enqueue one by one and in batches of 1,000; enqueue->start latency with a claimer
waiting on an idle queue (producer and claimer on separate connections); the CPU an idle waiting
claimer burns; and claim latency with 1,000,000 queued jobs (inserted with one INSERT ...
SELECT generate_series), with the index the claim used.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import statistics
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gaia.validator.core import Job, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.postgres import PostgresQueue
from gaia.validator.queues.postgres.connection import SESSION_SETTINGS

ENQUEUE_ONE_JOBS = 2_000
ENQUEUE_BATCH_JOBS = 20_000
BATCH = 1_000
PROCESS_JOBS = 5_000
CLAIMERS = 10
REPEATS = 3
LATENCY_SAMPLES = 300
IDLE_SECONDS = 3.0
BIG_QUEUE = 1_000_000
BIG_QUEUE_CLAIMS = 300

Row = dict[str, str | float]
Runner = Callable[[str], Awaitable[float]]


# -- the server and fresh databases ------------------------------------------------------------
@asynccontextmanager
async def bench_server() -> AsyncIterator[tuple[str, str]]:
    """(superuser URL, description of the settings)."""
    url = os.environ.get("GAIA_BENCH_POSTGRES_URL")
    if url:
        yield url, "server from $GAIA_BENCH_POSTGRES_URL"
        return
    from tests.servers.postgres import PostgresServer

    fsync = os.environ.get("GAIA_BENCH_PG_FSYNC", "off") == "on"
    server = PostgresServer(fsync=fsync, settings={"max_connections": "200"})
    await asyncio.to_thread(server.start)
    try:
        version = await _fetchval(server.url, "SHOW server_version")
        yield server.url, f"PostgreSQL {version}, throwaway cluster, fsync={'on' if fsync else 'off'}"
    finally:
        await asyncio.to_thread(server.close)


async def _fetchval(url: str, sql: str) -> object:
    connection = await asyncpg.connect(url)
    try:
        return await connection.fetchval(sql)
    finally:
        await connection.close()


@asynccontextmanager
async def fresh_database(server_url: str) -> AsyncIterator[str]:
    name = f"bench_{uuid.uuid4().hex[:12]}"
    await _fetchval(server_url, f'CREATE DATABASE "{name}"')
    try:
        yield urlunsplit(urlsplit(server_url)._replace(path=f"/{name}"))
    finally:
        await _fetchval(server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _job(i: int) -> Job:
    return new_job("bench.noop", {"i": i})


def _percentiles_ms(samples: list[float]) -> tuple[float, float]:
    samples.sort()
    p99 = samples[max(0, int(0.99 * len(samples)) - 1)]
    return statistics.median(samples) * 1000, p99 * 1000


# -- ours ----------------------------------------------------------------------------------------
async def enqueue_rate(url: str, batch: bool) -> float:
    queue = await open_queue(url)
    try:
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
    finally:
        await queue.close()


async def ours_processing(url: str) -> float:
    """10 concurrent claimers in one process, claim + complete until all N are done."""
    queue = await open_queue(url)
    try:
        await queue.enqueue_many([_job(i) for i in range(PROCESS_JOBS)])

        async def claimer(worker: str) -> int:
            done = 0
            while (lease := await queue.claim(worker)) is not None:
                await queue.complete(lease)
                done += 1
            return done

        started = time.perf_counter()
        done = await asyncio.gather(*(claimer("bench-worker") for _ in range(CLAIMERS)))
        elapsed = time.perf_counter() - started
        assert sum(done) == PROCESS_JOBS, f"processed {sum(done)} of {PROCESS_JOBS}"
        return PROCESS_JOBS / elapsed
    finally:
        await queue.close()


async def enqueue_to_start_latency(url: str) -> tuple[float, float]:
    """A claimer waits on an idle queue; a producer (own pool) enqueues one job at a time."""
    consumer = await open_queue(url)
    producer = await open_queue(url)
    try:
        await consumer.claim("warm-up")  # opens the pool; the LISTEN starts with the first wait
        latencies: list[float] = []
        for i in range(LATENCY_SAMPLES + 10):
            waiting = asyncio.create_task(consumer.claim("latency", wait=10.0))
            await asyncio.sleep(0.005)  # the claimer is parked
            started = time.perf_counter()
            await producer.enqueue(_job(i))
            lease = await waiting
            elapsed = time.perf_counter() - started
            assert lease is not None
            await consumer.complete(lease)
            if i >= 10:  # the first few warm the statement caches
                latencies.append(elapsed)
        return _percentiles_ms(latencies)
    finally:
        await consumer.close()
        await producer.close()


async def idle_waiting_cpu(url: str) -> float:
    """CPU seconds per second this process spends while a claimer waits on an empty queue."""
    queue = await open_queue(url)
    try:
        await queue.claim("warm-up", wait=0.1)
        before = resource.getrusage(resource.RUSAGE_SELF)
        started = time.perf_counter()
        assert await queue.claim("idle", wait=IDLE_SECONDS) is None
        after = resource.getrusage(resource.RUSAGE_SELF)
        used = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return used / (time.perf_counter() - started)
    finally:
        await queue.close()


async def big_queue_claims(url: str) -> tuple[float, float, float, str]:
    """(insert seconds, claim p50 ms, claim p99 ms, index used) with BIG_QUEUE queued jobs."""
    queue = await open_queue(url)
    assert isinstance(queue, PostgresQueue)
    connection = await asyncpg.connect(url, server_settings=SESSION_SETTINGS)
    try:
        now = time.time()
        started = time.perf_counter()
        await connection.execute(
            "INSERT INTO gaia_queue.jobs (id, type, status, priority, not_before, attempts,"
            " max_attempts, lease_token, timeout, memory_mb, correlation_id, created_at,"
            " updated_at, payload, metadata)"
            " SELECT 'big-' || g, 'bench.noop', 'queued', g % 10, $1 - 1000 + g * 0.0001, 0, 3,"
            " 0, 300, 0, 'big-' || g, $1, $1, jsonb_build_object('i', g), '{}'"
            f" FROM generate_series(1, {BIG_QUEUE}) AS g",
            now,
        )
        inserted = time.perf_counter() - started
        plan = await connection.fetchval(
            "EXPLAIN (FORMAT JSON) " + _claim_sql(queue), time.time(), 30.0, "explain"
        )
        index = ", ".join(sorted(_index_names(json.loads(plan)[0]["Plan"])))
        latencies = []
        for _ in range(BIG_QUEUE_CLAIMS):
            began = time.perf_counter()
            lease = await queue.claim("big")
            latencies.append(time.perf_counter() - began)
            assert lease is not None
        p50, p99 = _percentiles_ms(latencies)
        return inserted, p50, p99, index
    finally:
        await connection.close()
        await queue.close()


def _claim_sql(queue: PostgresQueue) -> str:
    from gaia.validator.queues.postgres.statements import statements_for

    return statements_for(queue.options.schema).claim_any


def _index_names(plan: dict[str, object]) -> set[str]:
    names = {str(plan["Index Name"])} if "Index Name" in plan else set()
    for child in plan.get("Plans", []):  # type: ignore[attr-defined]
        names |= _index_names(child)
    return names


# -- peers ---------------------------------------------------------------------------------------
async def pgqueuer_processing(url: str) -> float:
    """pgqueuer 0.x/1.x on asyncpg: batch-enqueue N, then QueueManager.run in drain mode
    (its default batch_size=10 picks 10 jobs per dequeue; 10 concurrent tasks)."""
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.qm import QueueManager
    from pgqueuer.queries import Queries
    from pgqueuer.types import QueueExecutionMode

    connection = await asyncpg.connect(url)
    try:
        await Queries(AsyncpgDriver(connection)).install()
        for i in range(0, PROCESS_JOBS, BATCH):
            count = min(BATCH, PROCESS_JOBS - i)
            await Queries(AsyncpgDriver(connection)).enqueue(
                ["noop"] * count, [None] * count, [0] * count
            )
    finally:
        await connection.close()
    worker_connection = await asyncpg.connect(url)
    done = 0
    manager = QueueManager(Queries(AsyncpgDriver(worker_connection)))

    @manager.entrypoint("noop")
    async def noop(job: object) -> None:
        nonlocal done
        done += 1

    try:
        started = time.perf_counter()
        await manager.run(batch_size=CLAIMERS, mode=QueueExecutionMode.drain)
        elapsed = time.perf_counter() - started
    finally:
        if not worker_connection.is_closed():
            await worker_connection.close()
    assert done == PROCESS_JOBS, f"pgqueuer processed {done} of {PROCESS_JOBS}"
    return PROCESS_JOBS / elapsed


async def pgqueuer_batch_enqueue(url: str) -> float:
    from pgqueuer.db import AsyncpgDriver
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(url)
    try:
        queries = Queries(AsyncpgDriver(connection))
        await queries.install()
        started = time.perf_counter()
        for _ in range(0, ENQUEUE_BATCH_JOBS, BATCH):
            await queries.enqueue(["noop"] * BATCH, [b'{"i": 1}'] * BATCH, [0] * BATCH)
        return ENQUEUE_BATCH_JOBS / (time.perf_counter() - started)
    finally:
        await connection.close()


async def procrastinate_processing(url: str) -> float:
    """procrastinate (psycopg 3): batch_defer N, then run_worker_async(concurrency=10,
    wait=False), which returns once the queue is empty."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    done = 0

    @app.task(name="noop")
    async def noop() -> None:
        nonlocal done
        done += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for i in range(0, PROCESS_JOBS, BATCH):
            await noop.batch_defer_async(*([{}] * min(BATCH, PROCESS_JOBS - i)))
        started = time.perf_counter()
        await app.run_worker_async(
            concurrency=CLAIMERS, wait=False, install_signal_handlers=False
        )
        elapsed = time.perf_counter() - started
    assert done == PROCESS_JOBS, f"procrastinate processed {done} of {PROCESS_JOBS}"
    return PROCESS_JOBS / elapsed


async def saq_processing(url: str) -> float:
    """saq's PostgresQueue (psycopg 3): enqueue N, then a Worker(concurrency=10, burst=True);
    timed until the N-th job ran (burst mode's exit wait is not counted)."""
    from saq import Worker
    from saq.queue.postgres import PostgresQueue as SaqQueue

    queue = SaqQueue.from_url(url)
    await queue.connect()
    finished = asyncio.Event()
    done = 0

    async def noop(ctx: object) -> None:
        nonlocal done
        done += 1
        if done == PROCESS_JOBS:
            finished.set()

    try:
        for _ in range(PROCESS_JOBS):
            await queue.enqueue("noop")
        worker = Worker(
            queue, functions=[("noop", noop)], concurrency=CLAIMERS, burst=True,
            dequeue_timeout=1.0,
        )
        started = time.perf_counter()
        running = asyncio.create_task(worker.start())
        await finished.wait()
        elapsed = time.perf_counter() - started
        await running
    finally:
        await queue.disconnect()
    return PROCESS_JOBS / elapsed


PEERS: dict[str, Runner] = {
    "procrastinate": procrastinate_processing,
    "saq": saq_processing,
}


# -- the run -------------------------------------------------------------------------------------
async def _measure(server_url: str, runner: Runner) -> float:
    async with fresh_database(server_url) as url:
        return await runner(url)


async def run() -> list[Row]:
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    logging.getLogger("saq").setLevel(logging.ERROR)
    rows: list[Row] = []

    def add(backend: str, metric: str, value: float | str, unit: str, note: str = "") -> None:
        rows.append({"backend": backend, "metric": metric, "value": value, "unit": unit,
                     "note": note})

    async with bench_server() as (server_url, settings):
        add("postgres", "server", settings, "")
        add("postgres", "enqueue one by one",
            await _measure(server_url, lambda u: enqueue_rate(u, batch=False)), "jobs/s")
        add("postgres", f"enqueue in batches of {BATCH}",
            await _measure(server_url, lambda u: enqueue_rate(u, batch=True)), "jobs/s",
            "target >= 20,000")
        ours: list[float] = []
        pgqueuer: list[float] = []
        pgqueuer_error = ""
        for _ in range(REPEATS):
            ours.append(await _measure(server_url, ours_processing))
            if not pgqueuer_error:
                try:
                    pgqueuer.append(await _measure(server_url, pgqueuer_processing))
                except ImportError as error:
                    pgqueuer_error = f"not installed ({error.name})"
        our_rate = statistics.median(ours)
        add("postgres", f"processing, {CLAIMERS} claimers (claim + complete)", our_rate,
            "jobs/s", f"median of {REPEATS}: " + ", ".join(f"{r:.0f}" for r in ours))
        p50, p99 = await _measure(server_url, enqueue_to_start_latency)
        add("postgres", "enqueue->start latency p50", p50, "ms", "target <= 5 ms")
        add("postgres", "enqueue->start latency p99", p99, "ms")
        add("postgres", "idle waiting claimer CPU",
            await _measure(server_url, idle_waiting_cpu) * 100, "% of a core")
        inserted, claim50, claim99, index = await _measure(server_url, big_queue_claims)
        add("postgres", f"claim latency p50, {BIG_QUEUE:,} queued", claim50, "ms",
            f"index: {index}; insert took {inserted:.1f} s")
        add("postgres", f"claim latency p99, {BIG_QUEUE:,} queued", claim99, "ms")
        if pgqueuer:
            rate = statistics.median(pgqueuer)
            add("pgqueuer", "processing (batch_size=10, drain)", rate, "jobs/s",
                f"median of {REPEATS}: " + ", ".join(f"{r:.0f}" for r in pgqueuer))
            add("postgres", "processing / pgqueuer", our_rate / rate, "x", "target >= 1.5")
            batch_rate = await _measure(server_url, pgqueuer_batch_enqueue)
            add("pgqueuer", f"enqueue in batches of {BATCH}", batch_rate, "jobs/s")
        else:
            add("pgqueuer", "processing", "skipped", "", pgqueuer_error)
        for name, runner in PEERS.items():
            try:
                rate = await _measure(server_url, runner)
            except ImportError as error:
                add(name, "processing", "skipped", "", f"not installed ({error.name})")
                continue
            add(name, "processing (concurrency 10)", rate, "jobs/s")
            add("postgres", f"processing / {name}", our_rate / rate, "x")
    return rows


def print_table(rows: list[Row]) -> None:
    print(f"{'backend':14} {'metric':46} {'value':>12} {'unit':12} note")
    for row in rows:
        value = row["value"]
        shown = f"{value:12,.2f}" if isinstance(value, float) else f"{value!s:>12}"
        print(f"{row['backend']!s:14} {row['metric']!s:46} {shown} {row['unit']!s:12} "
              f"{row['note']}")


if __name__ == "__main__":
    print_table(asyncio.run(run()))
