"""Damaged rows in the SQLite file: dead-lettered at claim with a clear error, raw values kept
in the quarantine column, and the claim goes on to the next good job."""

from __future__ import annotations

import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from harness_sqlite import insert_raw_row

from gaia.validator.core import CorruptJob, JobStatus, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.sqlite import SqliteQueue


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    opened = await open_queue(f"sqlite:///{tmp_path / 'q.db'}")
    assert isinstance(opened, SqliteQueue)
    yield opened
    await opened.close()


def _quarantine(path: Path, job_id: str) -> dict[str, object]:
    with sqlite3.connect(path) as connection:
        row = connection.execute("SELECT quarantine FROM jobs WHERE id = ?", (job_id,)).fetchone()
    connection.close()
    loaded = json.loads(row[0])
    assert isinstance(loaded, dict)
    return loaded


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ('{"n": 1, "tru', "not valid JSON"),
        ("[1, 2, 3]", "'payload' must be an object"),
        ('"just text"', "'payload' must be an object"),
    ],
)
async def test_damaged_payload_is_dead_lettered_with_the_raw_text_kept(
    queue: SqliteQueue, payload: str, reason: str
) -> None:
    bad_id = insert_raw_row(queue.options.path, "test.noop", payload=payload, now=time.time() - 5)
    good = await queue.enqueue(new_job("test.noop", {"n": 2}))
    lease = await queue.claim("w")
    assert lease is not None and lease.job_id == good.id
    dead = await queue.get(bad_id)
    assert dead is not None and dead.status is JobStatus.DEAD
    assert dead.error is not None and dead.error.kind == "corrupt_record"
    assert "invalid" in dead.error.message and reason in dead.error.message
    assert bad_id in dead.error.message
    assert dead.payload == {}
    assert _quarantine(queue.options.path, bad_id) == {"payload": payload}


async def test_reading_a_damaged_row_raises_corrupt_job_naming_it(queue: SqliteQueue) -> None:
    bad_id = insert_raw_row(queue.options.path, "test.noop", payload="{oops", now=time.time())
    with pytest.raises(CorruptJob, match=f"job '{bad_id}': column 'payload' is not valid JSON"):
        await queue.get(bad_id)


async def test_damaged_row_of_a_running_job_is_dead_lettered_by_the_reaper(
    queue: SqliteQueue,
) -> None:
    job = await queue.enqueue(new_job("test.noop", {"n": 1}))
    lease = await queue.claim("w", lease_seconds=0.01)
    assert lease is not None
    with sqlite3.connect(queue.options.path) as connection:
        connection.execute("UPDATE jobs SET metadata = '{bad' WHERE id = ?", (job.id,))
    connection.close()
    await asyncio.sleep(0.05)
    assert await queue.reap() == 0  # nothing reclaimed: the damaged job went dead instead
    dead = await queue.get(job.id)
    assert dead is not None and dead.status is JobStatus.DEAD
    assert dead.error is not None and "'metadata' is not valid JSON" in dead.error.message
    assert dead.payload == {"n": 1}, "undamaged columns are kept"


async def test_many_damaged_rows_never_stop_the_claim(queue: SqliteQueue) -> None:
    bad = [
        insert_raw_row(queue.options.path, "test.noop", payload="{", now=time.time() - 10)
        for _ in range(20)
    ]
    good = await queue.enqueue(new_job("test.noop", {}))
    lease = await queue.claim("w")
    assert lease is not None and lease.job_id == good.id
    dead = await queue.list_jobs(status=JobStatus.DEAD)
    assert sorted(job.id for job in dead) == sorted(bad)
