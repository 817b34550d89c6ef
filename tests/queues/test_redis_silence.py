"""A Redis server that stops answering (a partition, a black-holed host) without closing its
connections: every wait and call is bounded, so a worker still stops."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

import pytest
from servers.relay import SilentRelay

from gaia.validator.core import Task, TaskContext, TaskRegistry
from gaia.validator.queues import open_queue
from gaia.validator.workers import PoolConfig, WorkerPool


@pytest.fixture
async def relay(redis_url: str) -> AsyncIterator[tuple[SilentRelay, str]]:
    parts = urlsplit(redis_url)
    assert parts.port is not None
    relay = SilentRelay(parts.port)
    await relay.start()
    yield relay, f"redis://127.0.0.1:{relay.port}{parts.path}"
    await relay.stop()


async def noop(ctx: TaskContext, payload: dict[str, int]) -> None:
    return None


async def test_an_idle_pool_stops_while_the_server_is_silent(
    relay: tuple[SilentRelay, str],
) -> None:
    silent, url = relay
    queue = await open_queue(f"{url}?queue=silence&timeout=1&retry_for=1")
    task = Task("test.noop", noop, dict)
    pool = WorkerPool(queue, TaskRegistry([task]), PoolConfig(concurrency=1, idle_wait=0.5))  # type: ignore[list-item]
    await pool.start()
    await asyncio.sleep(0.3)  # the claimer is blocked in its wait for work
    silent.silent = True
    await asyncio.sleep(0.2)
    stopping = asyncio.ensure_future(pool.stop())
    done, _ = await asyncio.wait([stopping], timeout=60)
    assert done, "stop() must end though the server no longer answers"
    await stopping
    silent.silent = False
    await queue.close()


async def test_a_wait_on_a_silent_server_ends_and_the_queue_recovers(
    relay: tuple[SilentRelay, str],
) -> None:
    silent, url = relay
    queue = await open_queue(f"{url}?queue=silence&timeout=1&retry_for=5")
    task = Task("test.noop", noop, dict)
    waiting = asyncio.ensure_future(queue.claim_many("w", 1, wait=0.5))
    await asyncio.sleep(0.2)  # the claim found nothing and waits in BLPOP
    silent.silent = True
    done, _ = await asyncio.wait([waiting], timeout=60)
    assert done, "a claim's wait must end though the server no longer answers"
    with pytest.raises(ConnectionError, match="unreachable"):
        await waiting  # the wait ended; the claim after it found the server silent too
    silent.silent = False
    job = await queue.enqueue(task.job({}))
    lease = await queue.claim("w", wait=5.0)
    assert lease is not None and lease.job_id == job.id
    await queue.close()
