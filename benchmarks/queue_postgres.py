"""PostgreSQL queue against its peers (pgqueuer, procrastinate, saq), same server, same run.

``python -m benchmarks.queue_postgres`` (from the repo root). Starts a throwaway PostgreSQL
(tests/servers; fsync off unless GAIA_BENCH_PG_FSYNC=on) or uses $GAIA_BENCH_POSTGRES_URL (a
superuser URL: each measurement creates and drops its own database). Every system processes the
same N no-op jobs, enqueued first, with 10 concurrent slots in one process; the processing rates
are the median of REPEATS runs, ours and pgqueuer's interleaved, since the machine may be shared;
CPU per job (this process, and the server's processes when the benchmark started the server) is
reported beside jobs/s, as it depends less on what else the machine is doing.
Peers are optional (``pip install pgqueuer procrastinate saq[postgres]``): a missing one is
reported, not fatal.

Beside the claim + complete loop (the figure compared with pgqueuer), the same loop with
``complete_and_claim`` (one statement per batch) and the WorkerPool (1 x 10 slots, what
``gaia worker`` runs) process the same N jobs.

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
from typing import TypeVar
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from gaia.validator.core import Job, JobStatus, Task, TaskContext, TaskRegistry, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.postgres import PostgresQueue
from gaia.validator.queues.postgres.connection import SESSION_SETTINGS

from .queue_postgres_peers import (
    BATCH,
    CLAIMERS,
    ENQUEUE_BATCH_JOBS,
    PEER_TIMEOUT,
    PEERS,
    PROCESS_JOBS,
    Processing,
    Window,
    pgqueuer_batch_enqueue,
    pgqueuer_processing,
    processing,
)

ENQUEUE_ONE_JOBS = 2_000
REPEATS = 5
LATENCY_SAMPLES = 300
IDLE_SECONDS = 3.0
BIG_QUEUE = 1_000_000
BIG_QUEUE_CLAIMS = 300

Row = dict[str, str | float]




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
    Window.server_pid = int((server.data_dir / "postmaster.pid").read_text().split()[0])
    try:
        version = await _fetchval(server.url, "SHOW server_version")
        yield server.url, f"PostgreSQL {version}, throwaway cluster, fsync={'on' if fsync else 'off'}"
    finally:
        Window.server_pid = None
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


async def ours_processing(url: str) -> Processing:
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

        window = Window()
        window.start()
        done = await asyncio.gather(*(claimer("bench-worker") for _ in range(CLAIMERS)))
        window.stop()
        assert sum(done) == PROCESS_JOBS, f"processed {sum(done)} of {PROCESS_JOBS}"
        return processing(window, PROCESS_JOBS)
    finally:
        await queue.close()


async def fused_processing(url: str) -> Processing:
    """Like ``ours_processing``, but each claimer completes its job and claims the next with
    ``complete_and_claim``: one statement per batch instead of two. The WorkerPool does not
    call it (yet): it frees a slot only once the completion returned."""
    queue = await open_queue(url)
    assert isinstance(queue, PostgresQueue)
    try:
        await queue.enqueue_many([_job(i) for i in range(PROCESS_JOBS)])

        async def claimer(worker: str) -> int:
            done = 0
            lease = await queue.claim(worker)
            while lease is not None:
                _, leases = await queue.complete_and_claim(lease)
                done += 1
                lease = leases[0] if leases else None
            return done

        window = Window()
        window.start()
        done = await asyncio.gather(*(claimer("bench-worker") for _ in range(CLAIMERS)))
        window.stop()
        assert sum(done) == PROCESS_JOBS, f"processed {sum(done)} of {PROCESS_JOBS}"
        return processing(window, PROCESS_JOBS)
    finally:
        await queue.close()


async def pool_processing(url: str) -> Processing:
    """The WorkerPool (1 pool x 10 slots: what ``gaia worker`` runs) on no-op jobs, timed from
    the first job until the N-th completion was written (seen by a middleware's ``settled``)."""
    from gaia.validator.workers import PoolConfig, WorkerPool
    from gaia.validator.workers.middleware.base import Middleware

    window = Window()
    finished = asyncio.Event()

    class Settled(Middleware):
        count = 0

        def settled(self, result: object) -> None:
            self.count += 1
            if self.count == PROCESS_JOBS:
                window.stop()
                finished.set()

    async def noop(ctx: TaskContext, payload: dict[str, int]) -> None:
        window.start()

    task = Task("bench.noop", noop, dict)
    registry = TaskRegistry()
    registry.add(task)
    queue = await open_queue(url)
    try:
        await queue.enqueue_many([task.job({"i": i}) for i in range(PROCESS_JOBS)])
        pool = WorkerPool(queue, registry, PoolConfig(concurrency=CLAIMERS), middleware=[Settled()])
        await pool.start()
        await finished.wait()
        await pool.stop()
        stats = await queue.stats()
        assert stats.total(JobStatus.SUCCEEDED) == PROCESS_JOBS, stats
        return processing(window, PROCESS_JOBS)
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
            "EXPLAIN (FORMAT JSON) " + _claim_sql(queue), time.time(), 30.0, "explain", 1
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


# -- the run -------------------------------------------------------------------------------------
T = TypeVar("T")


async def _measure(server_url: str, runner: Callable[[str], Awaitable[T]]) -> T:
    async with fresh_database(server_url) as url:
        return await runner(url)


def _spread(values: list[float]) -> str:
    return f"median of {len(values)}: " + ", ".join(f"{value:,.0f}" for value in values)


async def _interleaved(
    server_url: str, ours: Callable[[str], Awaitable[T]], peer: Callable[[str], Awaitable[T]]
) -> tuple[list[T], list[T], str]:
    """REPEATS runs of each, alternating, so both see the same machine; (ours, peer, error)."""
    mine: list[T] = []
    theirs: list[T] = []
    error = ""
    for _ in range(REPEATS):
        mine.append(await _measure(server_url, ours))
        if not error:
            try:
                theirs.append(await _measure(server_url, peer))
            except ImportError as missing:
                error = f"not installed ({missing.name})"
    return mine, theirs, error


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
        ours_batch, peer_batch, _ = await _interleaved(
            server_url, lambda u: enqueue_rate(u, batch=True), pgqueuer_batch_enqueue
        )
        add("postgres", f"enqueue in batches of {BATCH}", statistics.median(ours_batch),
            "jobs/s", f"target >= 20,000; {_spread(ours_batch)}")
        if peer_batch:
            add("pgqueuer", f"enqueue in batches of {BATCH}", statistics.median(peer_batch),
                "jobs/s", _spread(peer_batch))

        ours, pgqueuer, pgqueuer_error = await _interleaved(
            server_url, ours_processing, pgqueuer_processing
        )
        our_rate = statistics.median(run.rate for run in ours)
        add("postgres", f"processing, {CLAIMERS} claimers (claim + complete)", our_rate,
            "jobs/s", _spread([run.rate for run in ours]))
        our_cpu = _cpu_rows(add, "postgres", ours)
        if pgqueuer:
            rate = statistics.median(run.rate for run in pgqueuer)
            add("pgqueuer", "processing (batch_size=10, drain)", rate, "jobs/s",
                _spread([run.rate for run in pgqueuer]))
            peer_cpu = _cpu_rows(add, "pgqueuer", pgqueuer)
            add("postgres", "processing / pgqueuer", our_rate / rate, "x", "target >= 1.5")
            if our_cpu and peer_cpu:
                add("postgres", "CPU per job: pgqueuer / ours", peer_cpu / our_cpu, "x",
                    "client + server; less sensitive to a shared machine than jobs/s")
        else:
            add("pgqueuer", "processing", "skipped", "", pgqueuer_error)
        fused = [await _measure(server_url, fused_processing) for _ in range(REPEATS)]
        add("postgres", f"processing, {CLAIMERS} claimers (complete_and_claim)",
            statistics.median(run.rate for run in fused), "jobs/s",
            _spread([run.rate for run in fused]))
        _cpu_rows(add, "postgres", fused)
        pool, pool_peer, _ = await _interleaved(server_url, pool_processing, pgqueuer_processing)
        pool_rate = statistics.median(run.rate for run in pool)
        add("postgres", f"processing, WorkerPool 1 x {CLAIMERS} slots", pool_rate, "jobs/s",
            _spread([run.rate for run in pool]))
        pool_cpu = _cpu_rows(add, "postgres", pool)
        if pool_peer:
            peer_rate = statistics.median(run.rate for run in pool_peer)
            peer_cpu = _cpu_rows(add, "pgqueuer", pool_peer)
            add("postgres", "WorkerPool / pgqueuer", pool_rate / peer_rate, "x",
                f"pgqueuer {peer_rate:,.0f} jobs/s in the same interleaved runs; target >= 1.5")
            if pool_cpu and peer_cpu:
                add("postgres", "CPU per job: pgqueuer / WorkerPool", peer_cpu / pool_cpu, "x")
        for name, runner in PEERS.items():
            try:
                result = await asyncio.wait_for(_measure(server_url, runner), PEER_TIMEOUT)
            except ImportError as error:
                add(name, "processing", "skipped", "", f"not installed ({error.name})")
                continue
            except TimeoutError:
                add(name, "processing", "timed out", "", f"no result within {PEER_TIMEOUT:g} s")
                continue
            add(name, f"processing (concurrency {CLAIMERS})", result.rate, "jobs/s")
            add("postgres", f"processing / {name}", our_rate / result.rate, "x")

        p50, p99 = await _measure(server_url, enqueue_to_start_latency)
        add("postgres", "enqueue->start latency p50", p50, "ms", "target <= 5 ms")
        add("postgres", "enqueue->start latency p99", p99, "ms")
        add("postgres", "idle waiting claimer CPU",
            await _measure(server_url, idle_waiting_cpu) * 100, "% of a core")
        inserted, claim50, claim99, index = await _measure(server_url, big_queue_claims)
        add("postgres", f"claim latency p50, {BIG_QUEUE:,} queued", claim50, "ms",
            f"index: {index}; insert took {inserted:.1f} s")
        add("postgres", f"claim latency p99, {BIG_QUEUE:,} queued", claim99, "ms")
    return rows


def _cpu_rows(
    add: Callable[..., None], backend: str, runs: list[Processing]
) -> float | None:
    """Add the median CPU per job rows; returns client + server us per job (None: unknown)."""
    client = statistics.median(run.client_us for run in runs)
    add(backend, "  CPU per job, this process", client, "us")
    if Window.server_pid is None:
        return None
    server = statistics.median(run.server_us for run in runs)
    add(backend, "  CPU per job, PostgreSQL", server, "us")
    return client + server


def print_table(rows: list[Row]) -> None:
    print(f"{'backend':14} {'metric':46} {'value':>12} {'unit':12} note")
    for row in rows:
        value = row["value"]
        shown = f"{value:12,.2f}" if isinstance(value, float) else f"{value!s:>12}"
        print(f"{row['backend']!s:14} {row['metric']!s:46} {shown} {row['unit']!s:12} "
              f"{row['note']}")


if __name__ == "__main__":
    print_table(asyncio.run(run()))
