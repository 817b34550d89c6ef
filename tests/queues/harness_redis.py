"""Conformance harness for ``redis://``: a flushed logical database of the session redis-server.

Each test gets its own queue name too, so a straggler of one test never meets another's keys.
"""

from __future__ import annotations

import uuid

import pytest
from clock import FakeClock

from gaia.validator.core.job import new_job
from gaia.validator.core.queue import Queue
from gaia.validator.queues import open_queue
from gaia.validator.queues.redis import RedisQueue


async def open_for_test(request: pytest.FixtureRequest, clock: FakeClock) -> Queue:
    url = request.getfixturevalue("redis_url")
    return await open_queue(f"{url}?queue=t{uuid.uuid4().hex[:12]}", clock=clock)


async def write_corrupt_job(queue: Queue, job_type: str) -> str | None:
    """A record whose ``spec`` is not JSON, put in the ready set like any due job."""
    assert isinstance(queue, RedisQueue)
    job = new_job(job_type, {}, now=0.0)  # not_before 0: due before anything the test enqueues
    await queue.enqueue(job)
    await queue._link.command("HSET", queue.keys.job(job.id), "spec", '{"id": "broken", payl')
    return job.id
