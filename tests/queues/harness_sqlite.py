"""Conformance harness for ``sqlite:///``: a fresh database file per test in pytest's tmp_path."""

from __future__ import annotations

import asyncio
import sqlite3
import time
import uuid
from pathlib import Path

import pytest
from clock import FakeClock

from gaia.validator.core.queue import Queue
from gaia.validator.queues import open_queue
from gaia.validator.queues.sqlite import SqliteQueue


async def open_for_test(request: pytest.FixtureRequest, clock: FakeClock) -> Queue:
    directory: Path = request.getfixturevalue("tmp_path")
    return await open_queue(f"sqlite:///{directory / 'queue.db'}", clock=clock)


def insert_raw_row(path: Path, job_type: str, *, payload: str, now: float) -> str:
    """Write a queued job row directly with SQL, bypassing the codec (for corrupt-data tests)."""
    job_id = uuid.uuid4().hex
    with sqlite3.connect(path, timeout=5.0) as connection:
        connection.execute(
            "INSERT INTO jobs (id, type, status, priority, not_before, attempts, max_attempts, "
            "timeout, memory_mb, correlation_id, created_at, updated_at, lease_token, payload, "
            "metadata) VALUES (?, ?, 'queued', 0, ?, 0, 3, 60.0, 0, ?, ?, ?, 0, ?, '{}')",
            (job_id, job_type, now, job_id, now, now, payload),
        )
    connection.close()
    return job_id


async def write_corrupt_job(queue: Queue, job_type: str) -> str | None:
    """Store a job whose payload column holds truncated JSON, as a damaged file would."""
    assert isinstance(queue, SqliteQueue)
    now = time.time() - 1.0
    return await asyncio.to_thread(
        insert_raw_row, queue.options.path, job_type, payload='{"n": 1, "tru', now=now
    )
