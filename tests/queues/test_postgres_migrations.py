"""PostgreSQL backend: versioned schema migrations are idempotent and safe to run concurrently."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from gaia.validator.core import JobStatus, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.postgres import PostgresQueue
from gaia.validator.queues.postgres.migrations import MIGRATIONS, SchemaTooNew, migrate, render

pytestmark = pytest.mark.postgres
LATEST = MIGRATIONS[-1].version


async def recorded_versions(url: str, schema: str = "gaia_queue") -> list[int]:
    connection = await asyncpg.connect(url)
    try:
        rows = await connection.fetch(f"SELECT version FROM {schema}.schema_migrations")
        return sorted(row["version"] for row in rows)
    finally:
        await connection.close()


async def test_migrate_applies_each_version_once(postgres_url: str) -> None:
    connection = await asyncpg.connect(postgres_url)
    try:
        assert await migrate(connection, "gaia_queue", "gaia_queue.claimable") == [
            m.version for m in MIGRATIONS
        ]
        assert await migrate(connection, "gaia_queue", "gaia_queue.claimable") == []
    finally:
        await connection.close()
    assert await recorded_versions(postgres_url) == [m.version for m in MIGRATIONS]


async def test_opening_twice_keeps_data_and_schema(postgres_url: str) -> None:
    first = await open_queue(postgres_url)
    job = await first.enqueue(new_job("test.noop", {"kept": True}))
    await first.close()
    second = await open_queue(postgres_url)
    try:
        assert await second.get(job.id) == job
    finally:
        await second.close()
    assert await recorded_versions(postgres_url) == [m.version for m in MIGRATIONS]


async def test_concurrent_opens_migrate_once(postgres_url: str) -> None:
    queues = await asyncio.gather(*(open_queue(postgres_url) for _ in range(6)))
    try:
        assert await recorded_versions(postgres_url) == [m.version for m in MIGRATIONS]
        jobs = await asyncio.gather(
            *(q.enqueue(new_job("test.noop", {"n": i})) for i, q in enumerate(queues))
        )
        assert (await queues[0].stats()).total(JobStatus.QUEUED) == len(jobs)
    finally:
        await asyncio.gather(*(q.close() for q in queues))


async def test_schema_newer_than_the_code_is_refused(postgres_url: str) -> None:
    queue = await open_queue(postgres_url)
    await queue.close()
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute(
            "INSERT INTO gaia_queue.schema_migrations (version, description) VALUES ($1, 'x')",
            LATEST + 1,
        )
    finally:
        await connection.close()
    with pytest.raises(SchemaTooNew, match=f"version {LATEST + 1}"):
        await open_queue(postgres_url)


async def test_schemas_are_separate_queues(postgres_url: str) -> None:
    alpha = await open_queue(postgres_url + "?schema=alpha")
    beta = await open_queue(postgres_url + "?schema=beta")
    assert isinstance(alpha, PostgresQueue) and isinstance(beta, PostgresQueue)
    try:
        job = await alpha.enqueue(new_job("test.noop", {}))
        assert await beta.get(job.id) is None
        assert await beta.claim("w1") is None
        lease = await alpha.claim("w1")
        assert lease is not None and lease.job_id == job.id
    finally:
        await alpha.close()
        await beta.close()
    assert await recorded_versions(postgres_url, "alpha") == [m.version for m in MIGRATIONS]
    assert await recorded_versions(postgres_url, "beta") == [m.version for m in MIGRATIONS]


async def test_upgrading_from_version_1_keeps_jobs_and_moves_checks_to_domains(
    postgres_url: str,
) -> None:
    """Version 2 turns the table's CHECK constraints (evaluated by every UPDATE, whatever it
    changes) into domains (evaluated when a column is written): jobs stored under version 1 are
    kept and claimable, and impossible scalars are still refused."""
    connection = await asyncpg.connect(postgres_url)
    try:
        await connection.execute("CREATE SCHEMA gaia_queue")
        await connection.execute(
            "CREATE TABLE gaia_queue.schema_migrations (version integer PRIMARY KEY,"
            " description text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())"
        )
        await connection.execute(render(MIGRATIONS[0].sql, "gaia_queue", "gaia_queue.claimable"))
        await connection.execute(
            "INSERT INTO gaia_queue.schema_migrations (version, description) VALUES (1, 'v1')"
        )
    finally:
        await connection.close()
    job = new_job("test.noop", {"kept": True})
    connection = await asyncpg.connect(postgres_url)
    try:
        columns = ", ".join(
            name for name in ("id", "type", "status", "priority", "not_before", "attempts",
                              "max_attempts", "lease_token", "timeout", "memory_mb",
                              "correlation_id", "created_at", "updated_at")
        )
        await connection.execute(
            f"INSERT INTO gaia_queue.jobs ({columns}, payload, metadata) VALUES ($1, $2,"
            " 'queued', 0, $3, 0, 3, 0, 60, 0, $4, $3, $3, '{\"kept\": true}', '{}')",
            job.id, job.type, job.created_at, job.correlation_id,
        )
    finally:
        await connection.close()
    queue = await open_queue(postgres_url)
    try:
        assert await recorded_versions(postgres_url) == [m.version for m in MIGRATIONS]
        lease = await queue.claim("w1")
        assert lease is not None and lease.job_id == job.id and lease.job.payload == {"kept": True}
        connection = await asyncpg.connect(postgres_url)
        try:
            checks = await connection.fetchval(
                "SELECT count(*) FROM pg_constraint"
                " WHERE conrelid = 'gaia_queue.jobs'::regclass AND contype = 'c'"
            )
            assert checks == 0, "no CHECK constraint left for every UPDATE to evaluate"
            trigger = await connection.fetchval(
                "SELECT pg_get_triggerdef(oid) FROM pg_trigger"
                " WHERE tgname = 'jobs_became_claimable'"
            )
            assert "AFTER UPDATE OF not_before" in trigger, trigger
            with pytest.raises(asyncpg.CheckViolationError):
                await connection.execute(
                    "UPDATE gaia_queue.jobs SET type = 'Bad Type' WHERE id = $1", job.id
                )
        finally:
            await connection.close()
    finally:
        await queue.close()
