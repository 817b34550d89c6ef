"""The function calls' own pipelined connection (``redis.wire``): authentication, database
selection, and the reply timeout that breaks a connection to an unresponsive server.

Each test starts its own redis-server (``start_redis_server``), so pausing it disturbs no
other test.
"""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Callable

import pytest

from gaia.validator.core import JobStatus, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.redis import RedisQueue


async def test_a_user_with_a_password_and_a_database_number(
    start_redis_server: Callable[..., object], opened: list[RedisQueue]
) -> None:
    server = start_redis_server(config={"user": "gaia on >s3cret ~* &* +@all"})
    port = server.port  # type: ignore[attr-defined]
    queue = await open_queue(f"redis://gaia:s3cret@127.0.0.1:{port}/5?queue=w")
    assert isinstance(queue, RedisQueue)
    opened.append(queue)
    job = await queue.enqueue(new_job("test.noop", {"n": 1}))
    lease = await queue.claim("w")
    assert lease is not None and lease.job_id == job.id
    assert (await queue.complete(lease, "ok")).status is JobStatus.SUCCEEDED
    keys = await queue._link.command("KEYS", "*")
    assert isinstance(keys, list) and keys, "the calls (on the wire) wrote to database 5"
    with pytest.raises(Exception, match=r"(?i)invalid username-password|WRONGPASS"):
        await open_queue(f"redis://gaia:wrong@127.0.0.1:{port}/5?queue=w&retry_for=0")


async def test_a_paused_server_times_calls_out_and_they_go_on_when_it_wakes(
    start_redis_server: Callable[..., object], opened: list[RedisQueue]
) -> None:
    """Calls sent to a stopped server time out, reconnect and are sent again marked as
    re-sends; when it wakes it runs them all, and a re-sent enqueue stores the job once."""
    server = start_redis_server()
    url = server.url  # type: ignore[attr-defined]
    queue = await open_queue(f"{url}?queue=p&timeout=0.3&retry_for=30")
    assert isinstance(queue, RedisQueue)
    opened.append(queue)
    await queue.enqueue(new_job("test.noop", {}))
    pid = server._process.pid  # type: ignore[attr-defined]
    job = new_job("test.noop", {"during": "pause"})
    os.kill(pid, signal.SIGSTOP)
    try:
        enqueuing = asyncio.create_task(queue.enqueue(job))
        await asyncio.sleep(1.0)  # several reply timeouts, reconnects and re-sends
        assert not enqueuing.done()
    finally:
        os.kill(pid, signal.SIGCONT)
    stored = await asyncio.wait_for(enqueuing, 30)
    assert stored.id == job.id and stored.status is JobStatus.QUEUED
    assert (await queue.stats()).counts["test.noop"] == {JobStatus.QUEUED: 2}
    claimed = {lease.job_id for lease in await queue.claim_many("w", 5)}
    assert job.id in claimed and len(claimed) == 2
