"""PostgreSQL backend: waiting claimers wake on NOTIFY from any writer, and at a delayed job's due
time; the LISTEN connection comes back after the server drops it.

Each claim may wait 30 s. A claim retries once more at its deadline, so a missing wake-up would
still return the job, only 30 s late: the tests therefore check that the claim came back well
before its deadline (a generous bound, not a speed measurement).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from harness_postgres import raw_execute

from gaia.validator.core import JobError, Lease, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.postgres import PostgresQueue

pytestmark = pytest.mark.postgres
WAIT = 30.0
WOKEN_WELL_BEFORE_DEADLINE = WAIT / 2


@pytest.fixture
async def pair(postgres_url: str) -> AsyncIterator[tuple[PostgresQueue, PostgresQueue]]:
    """Two queue instances on one database, as two processes would have (real clock)."""
    waiter = await open_queue(postgres_url)
    producer = await open_queue(postgres_url)
    assert isinstance(waiter, PostgresQueue) and isinstance(producer, PostgresQueue)
    try:
        yield waiter, producer
    finally:
        await waiter.close()
        await producer.close()


async def parked(queue: PostgresQueue, **options: object) -> asyncio.Task[Lease | None]:
    """A claim waiting up to WAIT s; its result is None if it was not woken in time."""

    async def claim() -> Lease | None:
        started = time.monotonic()
        lease = await queue.claim("waiter", wait=WAIT, **options)  # type: ignore[arg-type]
        return lease if time.monotonic() - started < WOKEN_WELL_BEFORE_DEADLINE else None

    task = asyncio.create_task(claim())
    await asyncio.sleep(0.3)  # let it find nothing and park
    assert not task.done()
    return task


async def test_enqueue_from_another_instance_wakes_the_claimer(
    pair: tuple[PostgresQueue, PostgresQueue],
) -> None:
    waiter, producer = pair
    waiting = await parked(waiter, types=["kind.wanted"])
    await producer.enqueue(new_job("kind.other", {}))
    wanted = await producer.enqueue(new_job("kind.wanted", {}))
    lease = await waiting
    assert lease is not None and lease.job_id == wanted.id


async def test_a_row_inserted_by_plain_sql_wakes_the_claimer(
    pair: tuple[PostgresQueue, PostgresQueue],
) -> None:
    waiter, _ = pair
    waiting = await parked(waiter)
    await raw_execute(
        waiter,
        "INSERT INTO gaia_queue.jobs (id, type, status, priority, not_before, attempts,"
        " max_attempts, lease_token, timeout, memory_mb, correlation_id, created_at, updated_at,"
        " payload, metadata) VALUES ('from-sql', 'test.noop', 'queued', 0, 0, 0, 1, 0, 60, 0,"
        " 'from-sql', 0, 0, '{}', '{}')",
    )
    lease = await waiting
    assert lease is not None and lease.job_id == "from-sql"


async def test_retry_and_release_wake_the_claimer(
    pair: tuple[PostgresQueue, PostgresQueue],
) -> None:
    waiter, producer = pair
    job = await producer.enqueue(new_job("test.noop", {}))
    held = await producer.claim("holder")
    assert held is not None
    waiting = await parked(waiter)
    await producer.retry(held, at=0.0)
    again = await waiting
    assert again is not None and again.job_id == job.id and again.job.attempts == 2
    waiting = await parked(producer)
    await waiter.release(again)
    last = await waiting
    assert last is not None and last.job_id == job.id and last.job.attempts == 2


async def test_requeue_reap_and_plain_sql_updates_wake_the_claimer(
    pair: tuple[PostgresQueue, PostgresQueue],
) -> None:
    """The claimable trigger fires on UPDATEs that set not_before: every statement of the queue
    that makes a job claimable sets it, and so must any other writer."""
    waiter, producer = pair
    job = await producer.enqueue(new_job("test.noop", {}))
    held = await producer.claim("holder")
    assert held is not None
    await producer.fail(held, JobError("bad"))
    waiting = await parked(waiter)
    await producer.requeue(job.id)
    requeued = await waiting
    assert requeued is not None and requeued.job_id == job.id
    await waiter.fail(requeued, JobError("bad again"))
    waiting = await parked(waiter)
    await raw_execute(
        producer,
        "UPDATE gaia_queue.jobs SET status = 'queued', not_before = 0 WHERE id = $1",
        job.id,
    )
    by_sql = await waiting
    assert by_sql is not None and by_sql.job_id == job.id
    await waiter.release(by_sql)
    expiring = await producer.claim("short", lease_seconds=0.05)
    assert expiring is not None
    await asyncio.sleep(0.1)
    waiting = await parked(waiter)
    assert await producer.reap() == 1
    reaped = await waiting
    assert reaped is not None and reaped.job_id == job.id


async def test_a_delayed_job_is_claimed_when_it_falls_due(
    pair: tuple[PostgresQueue, PostgresQueue],
) -> None:
    waiter, producer = pair
    waiting = await parked(waiter)
    job = await producer.enqueue(new_job("test.noop", {}, delay=1.0))
    lease = await waiting
    assert lease is not None and lease.job_id == job.id


async def test_listener_reconnects_after_its_connection_is_killed(
    pair: tuple[PostgresQueue, PostgresQueue],
) -> None:
    waiter, producer = pair
    assert await waiter.claim("warm-up", wait=0.1) is None  # starts the LISTEN connection
    for _ in range(100):
        first = await listening_backends(waiter)
        if first:
            break
        await asyncio.sleep(0.1)
    assert len(first) == 1
    await raw_execute(waiter, "SELECT pg_terminate_backend($1)", first[0])
    for _ in range(100):  # the listener reconnects after a short backoff
        again = await listening_backends(waiter)
        if again and again != first:
            break
        await asyncio.sleep(0.1)
    assert again and again != first, "the listener did not reconnect"
    waiting = await parked(waiter)
    job = await producer.enqueue(new_job("test.noop", {}))
    lease = await waiting
    assert lease is not None and lease.job_id == job.id


async def listening_backends(queue: PostgresQueue) -> list[int]:
    import asyncpg

    connection = await asyncpg.connect(queue.dsn)
    try:
        rows = await connection.fetch(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
            " AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
        )
        return [row["pid"] for row in rows]
    finally:
        await connection.close()
