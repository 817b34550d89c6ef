"""Peer systems on PostgreSQL for ``benchmarks.queue_postgres``, and the timing window shared
with it: pgqueuer (asyncpg), procrastinate and saq (psycopg 3), each with a minimal no-op
producer and consumer written from their documented APIs. Each is imported only when it runs,
so a peer that is not installed is reported as skipped.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import asyncpg

PROCESS_JOBS = 5_000
CLAIMERS = 10
BATCH = 1_000
ENQUEUE_BATCH_JOBS = 20_000
PEER_TIMEOUT = 300.0
"""A peer run that has not finished by then is reported as timed out, not waited for."""


class Window:
    """One timed stretch: wall seconds, this process's CPU and (when the benchmark started the
    server) the server's CPU, all over the same interval. ``start`` may be called from inside
    a peer's first job, so that its start-up is not counted against it."""

    server_pid: int | None = None  # the postmaster of the throwaway server

    def __init__(self) -> None:
        self.began: tuple[float, float, float] | None = None
        self.ended: tuple[float, float, float] | None = None

    @staticmethod
    def _now() -> tuple[float, float, float]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), usage.ru_utime + usage.ru_stime, _server_cpu(Window.server_pid)

    def start(self) -> None:
        if self.began is None:
            self.began = self._now()

    def stop(self) -> None:
        self.ended = self._now()

    def spent(self) -> tuple[float, float, float]:
        assert self.began is not None and self.ended is not None
        wall, client, server = (b - a for a, b in zip(self.began, self.ended, strict=True))
        return wall, client, server


@dataclass(frozen=True)
class Processing:
    rate: float
    client_us: float
    server_us: float


def processing(window: Window, jobs: int) -> Processing:
    wall, client, server = window.spent()
    return Processing(jobs / wall, client / jobs * 1e6, server / jobs * 1e6)


def _server_cpu(postmaster: int | None) -> float:
    """CPU seconds used so far by the server's postmaster and its backends (0 if unknown)."""
    if postmaster is None:
        return 0.0
    ticks = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(entry) == postmaster or int(fields[1]) == postmaster:
            ticks += int(fields[11]) + int(fields[12])  # utime + stime
    return ticks / os.sysconf("SC_CLK_TCK")


Runner = Callable[[str], Awaitable[Processing]]


# -- peers ---------------------------------------------------------------------------------------
async def pgqueuer_processing(url: str) -> Processing:
    """pgqueuer on asyncpg: batch-enqueue N, then QueueManager.run in drain mode (batch_size=10,
    its default: 10 jobs per dequeue, run as concurrent tasks). Timed from its first job to the
    return of run(), which flushes the last completions."""
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
    window = Window()
    manager = QueueManager(Queries(AsyncpgDriver(worker_connection)))

    @manager.entrypoint("noop")
    async def noop(job: object) -> None:
        nonlocal done
        window.start()
        done += 1

    try:
        await manager.run(batch_size=CLAIMERS, mode=QueueExecutionMode.drain)
        window.stop()
    finally:
        if not worker_connection.is_closed():
            await worker_connection.close()
    assert done == PROCESS_JOBS, f"pgqueuer processed {done} of {PROCESS_JOBS}"
    return processing(window, PROCESS_JOBS)


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


async def procrastinate_processing(url: str) -> Processing:
    """procrastinate (psycopg 3): batch_defer N, then run_worker_async(concurrency=10,
    wait=False), which returns once the queue is empty. Timed from its first job."""
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    done = 0
    window = Window()

    @app.task(name="noop")
    async def noop() -> None:
        nonlocal done
        window.start()
        done += 1

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for i in range(0, PROCESS_JOBS, BATCH):
            await noop.batch_defer_async(*([{}] * min(BATCH, PROCESS_JOBS - i)))
        await app.run_worker_async(
            concurrency=CLAIMERS, wait=False, install_signal_handlers=False
        )
        window.stop()
    assert done == PROCESS_JOBS, f"procrastinate processed {done} of {PROCESS_JOBS}"
    return processing(window, PROCESS_JOBS)


async def saq_processing(url: str) -> Processing:
    """saq's PostgresQueue (psycopg 3): enqueue N, then a Worker(concurrency=10, burst=True);
    timed from its first job until the N-th ran (burst mode's exit wait is not counted)."""
    from saq import Worker
    from saq.queue.postgres import PostgresQueue as SaqQueue

    queue = SaqQueue.from_url(url)
    await queue.connect()
    finished = asyncio.Event()
    done = 0

    window = Window()

    async def noop(ctx: object) -> None:
        nonlocal done
        window.start()
        done += 1
        if done == PROCESS_JOBS:
            window.stop()
            finished.set()

    try:
        for _ in range(PROCESS_JOBS):
            await queue.enqueue("noop")
        worker = Worker(
            queue, functions=[("noop", noop)], concurrency=CLAIMERS, burst=True,
            dequeue_timeout=1.0,
        )
        running = asyncio.create_task(worker.start())
        await finished.wait()
        await worker.stop()
        await asyncio.wait({running}, timeout=10)
        running.cancel()
    finally:
        await queue.disconnect()
    return processing(window, PROCESS_JOBS)


PEERS: dict[str, Runner] = {
    "procrastinate": procrastinate_processing,
    "saq": saq_processing,
}
