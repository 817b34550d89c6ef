"""Redis restarts and outages: the queue reconnects with backoff and loses no acknowledged job.

Each test starts its own AOF-backed redis-server (``start_redis_server``), so restarting it
disturbs no other test. ``restart`` blocks, so it runs in a thread while the event loop goes on.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gaia.validator.core import JobStatus, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.redis import RedisQueue


async def open_on(url: str, opened: list[RedisQueue], **options: str) -> RedisQueue:
    query = "&".join(f"{key}={value}" for key, value in {"queue": "r", **options}.items())
    queue = await open_queue(f"{url}?{query}")
    assert isinstance(queue, RedisQueue)
    opened.append(queue)
    return queue


async def in_thread(action: Callable[[], None]) -> None:
    await asyncio.to_thread(action)


async def test_jobs_survive_a_restart_and_the_queue_keeps_working(
    start_redis_server: Callable[..., object], opened: list[RedisQueue]
) -> None:
    server = start_redis_server()
    queue = await open_on(server.url, opened)  # type: ignore[attr-defined]
    jobs = [new_job("test.noop", {"n": n}) for n in range(200)]
    await queue.enqueue_many(jobs)
    running = await queue.claim("w", lease_seconds=300)
    assert running is not None
    await in_thread(server.restart)  # type: ignore[attr-defined]
    # Same queue object: it reconnects (the functions came back with the AOF).
    await queue.complete(running, "after restart")
    claimed = {running.job_id}
    while (lease := await queue.claim("w")) is not None:
        claimed.add(lease.job_id)
        await queue.complete(lease)
    assert claimed == {job.id for job in jobs}
    assert (await queue.stats()).counts["test.noop"] == {JobStatus.SUCCEEDED: 200}


async def test_acknowledged_enqueues_survive_a_crash_with_appendfsync_always(
    start_redis_server: Callable[..., object], opened: list[RedisQueue]
) -> None:
    server = start_redis_server(appendfsync="always")
    queue = await open_on(server.url, opened)  # type: ignore[attr-defined]
    jobs = [new_job("test.noop", {"n": n}) for n in range(50)]
    for job in jobs:
        await queue.enqueue(job)
    await in_thread(lambda: server.restart(crash=True))  # type: ignore[attr-defined]
    for job in jobs:
        stored = await queue.get(job.id)
        assert stored is not None and stored.status is JobStatus.QUEUED


async def test_producer_loses_nothing_while_the_server_restarts(
    start_redis_server: Callable[..., object], opened: list[RedisQueue]
) -> None:
    server = start_redis_server()
    producer = await open_on(server.url, opened)  # type: ignore[attr-defined]
    acknowledged: list[str] = []
    restarted = asyncio.Event()

    async def produce() -> None:
        while not restarted.is_set() or len(acknowledged) < 50:
            job = await producer.enqueue(new_job("test.noop", {}))
            acknowledged.append(job.id)

    producing = asyncio.create_task(produce())
    while len(acknowledged) < 20:
        await asyncio.sleep(0.01)
    await in_thread(server.restart)  # type: ignore[attr-defined]
    restarted.set()
    await producing
    stats = await producer.stats()
    assert stats.total(JobStatus.QUEUED) == len(acknowledged)
    for job_id in acknowledged:
        assert await producer.get(job_id) is not None


async def test_waiting_claimer_survives_a_restart(
    start_redis_server: Callable[..., object], opened: list[RedisQueue]
) -> None:
    server = start_redis_server()
    waiter = await open_on(server.url, opened)  # type: ignore[attr-defined]
    claiming = asyncio.create_task(waiter.claim("w", wait=60.0))
    await asyncio.sleep(0.2)
    await in_thread(server.restart)  # type: ignore[attr-defined]
    producer = await open_on(server.url, opened)  # type: ignore[attr-defined]
    job = await producer.enqueue(new_job("test.noop", {}))
    lease = await claiming
    assert lease is not None and lease.job_id == job.id


async def test_calls_fail_clearly_once_the_server_stays_away(
    start_redis_server: Callable[..., object], opened: list[RedisQueue]
) -> None:
    server = start_redis_server()
    queue = await open_on(server.url, opened, retry_for="0.5")  # type: ignore[attr-defined]
    await in_thread(server.stop)  # type: ignore[attr-defined]
    with pytest.raises(ConnectionError, match=r"server unreachable for .* \(retry_for=0.5\)"):
        await queue.enqueue(new_job("test.noop", {}))
