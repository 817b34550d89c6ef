"""Conformance harness for ``postgresql://``: a fresh database per test on the session server."""

from __future__ import annotations

import json

import pytest
from clock import FakeClock

from gaia.validator.core.queue import Queue
from gaia.validator.queues import open_queue


async def open_for_test(request: pytest.FixtureRequest, clock: FakeClock) -> Queue:
    url: str = request.getfixturevalue("postgres_url")
    return await open_queue(url, clock=clock)


async def write_corrupt_job(queue: Queue, job_type: str) -> str | None:
    """Insert a claimable row whose payload is a JSON string, not an object (no codec)."""
    from gaia.validator.queues.postgres import PostgresQueue

    assert isinstance(queue, PostgresQueue)
    job_id = "corrupt-payload-1"
    now = 0.0  # due long ago: claimed before any job the test enqueues
    await raw_execute(
        queue,
        f"INSERT INTO {queue.options.schema}.jobs (id, type, status, priority, not_before,"
        " attempts, max_attempts, lease_token, timeout, memory_mb, correlation_id, created_at,"
        " updated_at, payload, metadata) VALUES ($1::text, $2::text, 'queued', 0, $3, 0, 3, 0,"
        " 60, 0, $1::text, $3, $3, $4::text::jsonb, '{}')",
        job_id,
        job_type,
        now,
        json.dumps("this payload is a string, not an object"),
    )
    return job_id


async def raw_execute(queue: Queue, sql: str, *args: object) -> str:
    """Run SQL directly on the queue's database (tests only), outside the queue's codec."""
    import asyncpg

    from gaia.validator.queues.postgres import PostgresQueue

    assert isinstance(queue, PostgresQueue)
    connection = await asyncpg.connect(queue.dsn)
    try:
        result: str = await connection.execute(sql, *args)
        return result
    finally:
        await connection.close()
