"""SQLite schema: migrations applied once and idempotently, WAL mode, and query plans that use
the indexes (a claim is an index seek however many jobs are queued)."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from gaia.validator.core import JobStatus, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.sqlite import schema, store
from gaia.validator.queues.sqlite.database import connect
from gaia.validator.queues.sqlite.options import parse_sqlite_url


def _raw(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


async def test_opening_twice_migrates_once_and_keeps_data(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    first = await open_queue(url)
    job = await first.enqueue(new_job("test.noop", {"n": 1}))
    await first.close()
    second = await open_queue(url)
    try:
        assert await second.get(job.id) == job
    finally:
        await second.close()
    connection = _raw(tmp_path / "q.db")
    assert schema.schema_version(connection) == schema.SCHEMA_VERSION
    assert connection.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    connection.close()


def test_migrate_is_idempotent_and_reports_what_it_applied(tmp_path: Path) -> None:
    connection = _raw(tmp_path / "q.db")
    assert schema.migrate(connection, "q.db") == list(range(1, schema.SCHEMA_VERSION + 1))
    assert schema.migrate(connection, "q.db") == []
    indexes = {
        row[0] for row in connection.execute("SELECT name FROM sqlite_master WHERE type = 'index'")
    }
    assert {
        "jobs_claim_any",
        "jobs_claim_by_type",
        "jobs_dedupe_active",
        "jobs_lease_expiry",
        "jobs_finished",
    } <= indexes
    connection.close()


async def test_concurrent_opens_of_a_new_file_all_succeed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'q.db'}"
    queues = await asyncio.gather(*(open_queue(url) for _ in range(4)))
    try:
        stored = await asyncio.gather(
            *(queue.enqueue(new_job("test.noop", {"n": n})) for n, queue in enumerate(queues))
        )
        assert len(await queues[0].list_jobs(status=JobStatus.QUEUED)) == len(stored)
    finally:
        for queue in queues:
            await queue.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    connection = _raw(path)
    schema.migrate(connection, str(path))
    connection.execute(f"PRAGMA user_version = {schema.SCHEMA_VERSION + 1}")
    connection.close()
    with pytest.raises(schema.SchemaTooNew, match="newer than this code"):
        await open_queue(f"sqlite:///{path}")


@pytest.fixture
def connection(tmp_path: Path) -> sqlite3.Connection:
    return connect(parse_sqlite_url(f"sqlite:///{tmp_path / 'q.db'}"))


def _plan(connection: sqlite3.Connection, statement: str, params: tuple[object, ...]) -> str:
    rows = connection.execute(f"EXPLAIN QUERY PLAN {statement}", params).fetchall()
    return " | ".join(str(row[3]) for row in rows)


def test_claim_statements_seek_their_index_without_sorting(
    connection: sqlite3.Connection,
) -> None:
    any_type = _plan(connection, store._CLAIM_HEAD[False], (10,))
    by_type = _plan(connection, store._CLAIM_HEAD[True], ("kind.a", 10))
    assert "SEARCH jobs USING INDEX jobs_claim_any (priority<?)" in any_type
    assert "SEARCH jobs USING INDEX jobs_claim_by_type (type=? AND priority<?)" in by_type
    for plan in (any_type, by_type):
        assert "TEMP B-TREE" not in plan and "SCAN" not in plan


def test_housekeeping_and_dedupe_statements_use_their_indexes(
    connection: sqlite3.Connection,
) -> None:
    expiry = _plan(
        connection,
        f"SELECT {store.rows.SELECT_COLUMNS} FROM jobs INDEXED BY jobs_lease_expiry "
        "WHERE status = 'running' AND lease_expires_at < ? LIMIT ?",
        (1.0, 10),
    )
    assert "USING INDEX jobs_lease_expiry" in expiry
    holders = _plan(
        connection,
        f"SELECT id FROM jobs WHERE {schema.ACTIVE} AND dedupe_key IN (?, ?)",
        ("a", "b"),
    )
    assert "USING INDEX jobs_dedupe_active" in holders
    by_id = _plan(connection, store._BY_ID, ("some-id",))
    assert "USING INDEX sqlite_autoindex_jobs_1 (id=?)" in by_id


def test_claim_skips_priority_levels_with_nothing_due(connection: sqlite3.Connection) -> None:
    """Many delayed high-priority jobs must not hide a due low-priority one (one seek per
    level, not a scan), and the earliest delayed job's time is reported for the wait."""
    now = 1_000.0
    delayed = [
        new_job("kind.a", {"n": n}, priority=5 + n % 3, not_before=now + 60 + n, now=now)
        for n in range(300)
    ]
    due = new_job("kind.a", {"n": -1}, priority=0, not_before=now - 1, now=now)
    store.enqueue(connection, [*delayed, due])
    jobs, next_due = store.claim(connection, "w", None, 10.0, now, count=5)
    assert [job.id for job in jobs] == [due.id] and next_due is None
    jobs, next_due = store.claim(connection, "w", ["kind.a", "kind.b"], 10.0, now)
    assert jobs == [] and next_due == now + 60


def test_a_batch_claim_takes_the_best_due_jobs_in_order(connection: sqlite3.Connection) -> None:
    """One transaction claims up to `count` jobs, best first, and stops when none is due."""
    now = 1_000.0
    queued = [new_job("kind.a", {"n": n}, priority=n % 4, now=now + n) for n in range(10)]
    store.enqueue(connection, queued)
    expected = sorted(queued, key=lambda job: (-job.priority, job.created_at))
    first, _ = store.claim(connection, "w", None, 10.0, now + 20, count=4)
    rest, next_due = store.claim(connection, "w", None, 10.0, now + 20, count=50)
    assert [job.id for job in first + rest] == [job.id for job in expected]
    assert all(job.status is JobStatus.RUNNING and job.worker_id == "w" for job in first + rest)
    assert next_due is None


def test_the_partial_unique_index_holds_against_direct_inserts(
    connection: sqlite3.Connection,
) -> None:
    """The dedupe rule lives in the schema, not only in the code that inserts."""
    store.enqueue(connection, [new_job("kind.a", {}, dedupe_key="k")])
    duplicate = new_job("kind.a", {}, dedupe_key="k")
    with pytest.raises(sqlite3.IntegrityError, match="dedupe_key"):
        connection.execute(store.rows.INSERT, store.rows.insert_params(duplicate))
