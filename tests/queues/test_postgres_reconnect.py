"""PostgreSQL backend: the queue survives the server going away (restart, crash, outage)."""

from __future__ import annotations

import asyncio

import pytest
from clock import FakeClock

from gaia.validator.core import JobStatus, QueueClosed, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.postgres import DatabaseUnavailable, PostgresQueue

pytestmark = pytest.mark.postgres


async def test_restart_between_operations_loses_no_acknowledged_enqueue(
    postgres_server, postgres_url: str
) -> None:
    clock = FakeClock()
    queue = await open_queue(postgres_url, clock=clock)
    try:
        before = await queue.enqueue(new_job("test.noop", {"n": 1}, now=clock()))
        lease = await queue.claim("w1", lease_seconds=60)
        assert lease is not None
        await asyncio.to_thread(postgres_server.restart)
        after = await queue.enqueue(new_job("test.noop", {"n": 2}, now=clock()))
        await queue.complete(lease, "done across a restart")
        await asyncio.to_thread(postgres_server.restart, crash=True)
        stored_before = await queue.get(before.id)
        assert stored_before is not None and stored_before.status is JobStatus.SUCCEEDED
        assert stored_before.result == "done across a restart"
        second = await queue.claim("w1")
        assert second is not None and second.job_id == after.id
        await queue.complete(second)
        assert (await queue.stats()).total(JobStatus.SUCCEEDED) == 2
    finally:
        await queue.close()


async def test_waiting_claimer_wakes_after_restart(postgres_server, postgres_url: str) -> None:
    queue = await open_queue(postgres_url)
    producer = await open_queue(postgres_url)
    try:
        waiting = asyncio.create_task(queue.claim("w1", wait=60))
        await asyncio.sleep(0.3)  # the claimer is parked on its LISTEN connection
        await asyncio.to_thread(postgres_server.restart)
        job = await producer.enqueue(new_job("test.noop", {}))
        lease = await waiting
        assert lease is not None and lease.job_id == job.id
    finally:
        await queue.close()
        await producer.close()


async def test_outage_longer_than_reconnect_timeout_raises_clearly(start_postgres_server) -> None:
    server = start_postgres_server()
    queue = await open_queue(server.url + "?reconnect_timeout=1")
    assert isinstance(queue, PostgresQueue)
    try:
        await queue.enqueue(new_job("test.noop", {}))
        await asyncio.to_thread(server.stop)
        with pytest.raises(DatabaseUnavailable, match="reconnect_timeout"):
            await queue.enqueue(new_job("test.noop", {}))
        await asyncio.to_thread(server.start)
        again = await queue.enqueue(new_job("test.noop", {}))
        assert (await queue.get(again.id)) == again
        assert (await queue.stats()).total(JobStatus.QUEUED) == 2
    finally:
        await queue.close()


async def test_close_during_an_outage_does_not_wait_for_the_server(
    start_postgres_server,
) -> None:
    server = start_postgres_server()
    queue = await open_queue(server.url)  # reconnect_timeout: the default 60 s
    await asyncio.to_thread(server.stop)
    claiming = asyncio.create_task(queue.claim("w1"))
    await asyncio.sleep(0.5)  # the claim is now retrying against a stopped server
    assert not claiming.done()
    await queue.close()  # within the close grace (5 s), not the 60 s reconnect timeout
    with pytest.raises(QueueClosed):
        await claiming
