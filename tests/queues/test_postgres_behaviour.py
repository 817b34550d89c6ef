"""PostgreSQL backend specifics: batching under concurrency, dedupe races, corrupt rows, CHECKs,
idempotent re-sends, wake-ups across queue instances (as across processes), options."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator

import asyncpg
import pytest
from clock import FakeClock
from harness_postgres import raw_execute

from gaia.validator.core import (
    CorruptJob,
    InvalidTransition,
    Job,
    JobError,
    JobStatus,
    LeaseLost,
    Progress,
    QueueClosed,
    new_job,
)
from gaia.validator.queues import open_queue
from gaia.validator.queues.postgres import PostgresQueue

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg(postgres_url: str, clock: FakeClock) -> AsyncIterator[PostgresQueue]:
    queue = await open_queue(postgres_url, clock=clock)
    assert isinstance(queue, PostgresQueue)
    try:
        yield queue
    finally:
        await queue.close()


def make(clock: FakeClock, **options: object) -> Job:
    return new_job("test.noop", {"n": 1}, now=clock(), **options)  # type: ignore[arg-type]


async def test_batch_enqueue_stores_every_field(pg: PostgresQueue, clock: FakeClock) -> None:
    jobs = [
        new_job(
            "weather.era5",
            {"run": f"r{i}", "nested": {"x": [1.5, None, True], "text": "é ✓"}},
            metadata={"origin": "test", "i": i},
            priority=i - 2,
            max_attempts=4,
            timeout=12.5,
            memory_mb=64 * i,
            correlation_id=f"corr-{i}",
            dedupe_key=f"key-{i}" if i % 2 else None,
            delay=i * 0.25,
            now=clock(),
        )
        for i in range(5)
    ]
    assert await pg.enqueue_many(jobs) == jobs
    for job in jobs:
        assert await pg.get(job.id) == job


async def test_resending_the_same_job_is_idempotent(pg: PostgresQueue, clock: FakeClock) -> None:
    job = make(clock)
    await pg.enqueue(job)
    assert await pg.enqueue(job) == job  # e.g. a retry after a lost acknowledgement
    assert await pg.enqueue_many([job, job]) == [job, job]
    assert (await pg.stats()).total(JobStatus.QUEUED) == 1
    impostor = new_job("test.other", {"n": 2}, job_id=job.id, now=clock())
    with pytest.raises(ValueError, match=f"different job with id {job.id}"):
        await pg.enqueue(impostor)


async def test_concurrent_enqueues_of_one_key_store_one_job(
    postgres_url: str, clock: FakeClock
) -> None:
    queues = [await open_queue(postgres_url, clock=clock) for _ in range(3)]
    try:
        stored = await asyncio.gather(
            *(q.enqueue(make(clock, dedupe_key="same")) for q in queues for _ in range(10))
        )
        assert len({job.id for job in stored}) == 1
        assert (await queues[0].stats()).total(JobStatus.QUEUED) == 1
    finally:
        for queue in queues:
            await queue.close()


async def test_concurrent_claimers_in_two_processes_never_share_a_job(
    postgres_url: str, clock: FakeClock
) -> None:
    first = await open_queue(postgres_url, clock=clock)
    second = await open_queue(postgres_url, clock=clock)
    try:
        jobs = await first.enqueue_many([make(clock) for _ in range(300)])

        async def drain(queue: object, worker: str) -> list[str]:
            assert isinstance(queue, PostgresQueue)
            seen = []
            while (lease := await queue.claim(worker)) is not None:
                done = await queue.complete(lease, {"by": worker})
                assert done.status is JobStatus.SUCCEEDED and done.result == {"by": worker}
                seen.append(lease.job_id)
            return seen

        claimed = await asyncio.gather(
            *(drain(q, f"{tag}{n}") for q, tag in ((first, "a"), (second, "b")) for n in range(10))
        )
        ids = [job_id for chunk in claimed for job_id in chunk]
        assert sorted(ids) == sorted(job.id for job in jobs)
        assert (await first.stats()).total(JobStatus.SUCCEEDED) == 300
    finally:
        await first.close()
        await second.close()


async def test_concurrent_claims_take_the_best_jobs_in_order(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    jobs = [make(clock, priority=i % 5, not_before=clock() - i) for i in range(25)]
    await pg.enqueue_many(jobs)
    leases = await asyncio.gather(*(pg.claim(f"w{n}") for n in range(10)))
    best = sorted(jobs, key=lambda job: (-job.priority, job.not_before))[:10]
    assert sorted(lease.job_id for lease in leases if lease) == sorted(job.id for job in best)
    for lease in leases:
        assert lease is not None and lease.job.status is JobStatus.RUNNING


async def test_concurrent_completes_fence_the_stale_one(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    await pg.enqueue_many([make(clock) for _ in range(5)])
    leases = [await pg.claim("old", lease_seconds=10) for _ in range(5)]
    assert all(leases)
    clock.advance(5)
    await pg.heartbeat(leases[1], lease_seconds=10, progress=Progress(1, 2, "half"))  # type: ignore[arg-type]
    await pg.heartbeat(leases[2], lease_seconds=60)  # type: ignore[arg-type]
    clock.advance(6)  # leases 0, 3, 4 expired (lease 1 has 4 s left, lease 2 54 s)
    assert await pg.reap() == 3
    fresh = await pg.claim("new")
    assert fresh is not None
    stale = next(lease for lease in leases if lease and lease.job_id == fresh.job_id)
    held = [lease for lease in leases if lease is not None]
    outcomes = await asyncio.gather(
        *(pg.complete(lease, i) for i, lease in enumerate(held)), return_exceptions=True
    )
    by_id = {lease.job_id: outcome for lease, outcome in zip(held, outcomes, strict=True)}
    assert isinstance(by_id.pop(stale.job_id), LeaseLost)
    for lease in leases[1:3]:
        assert lease is not None
        done = by_id[lease.job_id]
        assert isinstance(done, Job) and done == await pg.get(lease.job_id)
        assert done.status is JobStatus.SUCCEEDED
    kept = await pg.get(leases[1].job_id)  # type: ignore[union-attr]
    assert kept is not None and kept.progress == Progress(1, 2, "half")


async def test_a_result_that_is_not_json_fails_only_its_caller(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    await pg.enqueue_many([make(clock), make(clock)])
    first, second = await asyncio.gather(pg.claim("w1"), pg.claim("w2"))
    assert first is not None and second is not None
    bad, good = await asyncio.gather(
        pg.complete(first, {"score": float("nan")}),
        pg.complete(second, {"score": 1.0}),
        return_exceptions=True,
    )
    assert isinstance(bad, ValueError)
    assert isinstance(good, Job) and good.result == {"score": 1.0}
    still = await pg.get(first.job_id)
    assert still is not None and still.status is JobStatus.RUNNING


CORRUPTIONS = {
    "metadata is an array": ("metadata", "[1, 2]"),
    "error is a number": ("error", "42"),
    "error lacks its kind": ("error", '{"message": "boom"}'),
    "payload is a list": ("payload", '["a", "b"]'),
    "payload is null": ("payload", "null"),
}


@pytest.mark.parametrize("column,value", CORRUPTIONS.values(), ids=list(CORRUPTIONS))
async def test_corrupt_documents_are_dead_lettered_and_readable(
    pg: PostgresQueue, clock: FakeClock, column: str, value: str
) -> None:
    job = await pg.enqueue(make(clock, not_before=0.0))
    await raw_execute(
        pg, f"UPDATE gaia_queue.jobs SET {column} = $1::text::jsonb WHERE id = $2", value, job.id
    )
    with pytest.raises(CorruptJob):
        await pg.get(job.id)
    assert await pg.claim("w1") is None, "the corrupt job is dead-lettered, not handed out"
    dead = await pg.get(job.id)
    assert dead is not None and dead.status is JobStatus.DEAD
    assert dead.error is not None and "invalid" in dead.error.message
    assert dead.error.kind == "corrupt_record" and job.id in dead.error.message
    assert dead.progress is None
    if column in ("payload", "metadata"):
        assert getattr(dead, column) == {f"invalid_{column}": json.loads(value)}


async def test_the_table_refuses_impossible_scalars(pg: PostgresQueue, clock: FakeClock) -> None:
    job = await pg.enqueue(make(clock))
    for assignment in ("status = 'finished'", "priority = 5000000", "max_attempts = 0",
                       "type = 'Not A Type'", "dedupe_key = ''", "timeout = 0", "id = ''",
                       "attempts = -1", "memory_mb = -1"):
        with pytest.raises(asyncpg.CheckViolationError):
            await raw_execute(pg, f"UPDATE gaia_queue.jobs SET {assignment} WHERE id = $1", job.id)


async def test_requeue_only_moves_dead_jobs(pg: PostgresQueue, clock: FakeClock) -> None:
    job = await pg.enqueue(make(clock))
    with pytest.raises(InvalidTransition):
        await pg.requeue(job.id)
    lease = await pg.claim("w1")
    assert lease is not None
    with pytest.raises(InvalidTransition, match="only a dead job"):
        await pg.requeue(job.id)
    await pg.fail(lease, JobError("bad", "permanent"))
    assert (await pg.requeue(job.id)).status is JobStatus.QUEUED


async def test_closing_wakes_a_waiting_claimer_and_refuses_calls(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    waiting = asyncio.create_task(pg.claim("w1", wait=30))
    await asyncio.sleep(0.2)
    await pg.close()
    assert await waiting is None
    with pytest.raises(QueueClosed):
        await pg.enqueue(make(clock))
    with pytest.raises(QueueClosed):
        await pg.claim("w1")


async def test_retention_options_purge_on_reap(postgres_url: str, clock: FakeClock) -> None:
    queue = await open_queue(f"{postgres_url}?result_ttl=10&dead_ttl=100", clock=clock)
    try:
        done, dead = await queue.enqueue_many([make(clock), make(clock)])
        await queue.complete(await queue.claim("w1"))  # type: ignore[arg-type]
        await queue.fail(await queue.claim("w1"), JobError("x"))  # type: ignore[arg-type]
        clock.advance(11)
        await queue.reap()
        assert await queue.get(done.id) is None
        assert await queue.get(dead.id) is not None
        clock.advance(100)
        await queue.reap()
        assert await queue.get(dead.id) is None
    finally:
        await queue.close()


async def test_concurrent_typed_claims_share_one_statement(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    wanted = [new_job("kind.a", {"i": i}, now=clock()) for i in range(4)]
    await pg.enqueue_many([*wanted, new_job("kind.b", {}, priority=9, now=clock())])
    leases = await asyncio.gather(*(pg.claim(f"w{n}", types=["kind.a"]) for n in range(6)))
    got = [lease for lease in leases if lease is not None]
    assert sorted(lease.job_id for lease in got) == sorted(job.id for job in wanted)
    assert {lease.worker_id for lease in got} <= {f"w{n}" for n in range(6)}
    assert len({lease.worker_id for lease in got}) == 4


async def test_requeue_is_refused_while_another_job_holds_the_key(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    first = await pg.enqueue(make(clock, dedupe_key="k"))
    await pg.fail(await pg.claim("w1"), JobError("bad"))  # type: ignore[arg-type]
    second = await pg.enqueue(make(clock, dedupe_key="k"))
    assert second.id != first.id
    with pytest.raises(InvalidTransition, match=f"held by active job {second.id}"):
        await pg.requeue(first.id)


async def test_a_claim_abandoned_in_flight_is_handed_back(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    job = await pg.enqueue(make(clock))
    blocker = await asyncpg.connect(pg.dsn)
    try:
        transaction = blocker.transaction()
        await transaction.start()
        await blocker.execute("LOCK TABLE gaia_queue.jobs IN ACCESS EXCLUSIVE MODE")
        claiming = asyncio.create_task(pg.claim("w1"))
        for _ in range(200):  # until the claim statement waits on the lock, server side
            waiting = await blocker.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                " AND query LIKE '%FOR UPDATE SKIP LOCKED%'"
            )
            if waiting:
                break
            await asyncio.sleep(0.02)
        assert waiting, "the claim never reached the server"
        claiming.cancel()
        await transaction.rollback()
    finally:
        await blocker.close()
    with pytest.raises(asyncio.CancelledError):
        await claiming
    for _ in range(200):  # the claim commits, then its lease is released in the background
        stored = await pg.get(job.id)
        if stored is not None and stored.status is JobStatus.QUEUED and stored.lease_token:
            break
        await asyncio.sleep(0.02)
    assert stored is not None and stored.status is JobStatus.QUEUED
    assert stored.attempts == 0 and stored.lease_token == 1
    again = await pg.claim("w2")
    assert again is not None and again.job_id == job.id


async def test_claim_many_takes_jobs_in_claim_order(pg: PostgresQueue, clock: FakeClock) -> None:
    low = await pg.enqueue(new_job("kind.a", {}, priority=0, now=clock()))
    high = await pg.enqueue(new_job("kind.b", {}, priority=5, now=clock()))
    clock.advance(1)
    later = await pg.enqueue(new_job("kind.a", {}, priority=5, now=clock()))
    first = await pg.claim_many("w", 2)
    assert [lease.job_id for lease in first] == [high.id, later.id]
    assert all(lease.job.lease_expires_at == clock() + 30.0 for lease in first)
    assert [lease.job_id for lease in await pg.claim_many("w", 10, types=["kind.a"])] == [low.id]
    assert await pg.claim_many("w", 10) == []
    with pytest.raises(ValueError, match="count must be >= 1"):
        await pg.claim_many("w", 0)


async def test_concurrent_claims_with_different_leases_keep_their_own(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    """One batch may mix worker ids and lease lengths: each caller's jobs carry its own."""
    await pg.enqueue_many([new_job("kind.a", {"i": i}, now=clock()) for i in range(6)])
    short, long, single = await asyncio.gather(
        pg.claim_many("w-short", 2, lease_seconds=10.0),
        pg.claim_many("w-long", 3, lease_seconds=100.0),
        pg.claim("w-single", lease_seconds=50.0),
    )
    assert single is not None
    assert [(lease.worker_id, lease.job.lease_expires_at) for lease in short] == [
        ("w-short", clock() + 10.0)
    ] * 2
    assert [(lease.worker_id, lease.job.lease_expires_at) for lease in long] == [
        ("w-long", clock() + 100.0)
    ] * 3
    assert (single.worker_id, single.job.lease_expires_at) == ("w-single", clock() + 50.0)
    assert len({lease.job_id for lease in [*short, *long, single]}) == 6


async def test_claim_many_replaces_a_corrupt_row_with_the_next_job(
    pg: PostgresQueue, clock: FakeClock
) -> None:
    jobs = await pg.enqueue_many([new_job("kind.a", {"i": i}, now=clock()) for i in range(3)])
    await raw_execute(
        pg, "UPDATE gaia_queue.jobs SET payload = '[1]' WHERE id = $1", jobs[0].id
    )
    leases = await pg.claim_many("w", 2)
    assert [lease.job_id for lease in leases] == [jobs[1].id, jobs[2].id]
    dead = await pg.get(jobs[0].id)
    assert dead is not None and dead.status is JobStatus.DEAD



async def test_a_connection_let_go_while_closing_goes_back_once(postgres_url: str) -> None:
    """A lane gives its connection back after a second idle, in a task, and a close gives back
    every held connection: when both run at once, the connection goes back to the pool once."""
    from gaia.validator.queues.postgres.connection import Connector
    from gaia.validator.queues.postgres.options import parse_postgres_url

    connector = Connector(parse_postgres_url(postgres_url))
    await connector.open()
    held = await connector.hold()
    await asyncio.gather(connector.unhold(held), connector.unhold(held))  # raised before
    again = await connector.hold()  # the pool still hands out working connections
    assert await again.fetchval("SELECT 1") == 1
    await connector.close()
    with pytest.raises(QueueClosed):
        await connector.hold()


async def test_synchronous_commit_is_the_servers_unless_the_url_sets_it(
    postgres_url: str,
) -> None:
    async def setting_of(url: str) -> str:
        queue = await open_queue(url)
        assert isinstance(queue, PostgresQueue)
        try:
            await queue.enqueue(new_job("test.noop", {}))  # opens a pooled session
            value: str = await queue._connector.run(
                lambda conn, _: conn.fetchval("SHOW synchronous_commit")
            )
            return value
        finally:
            await queue.close()

    assert await setting_of(postgres_url) == "on"  # the server's default: durable commits
    assert await setting_of(postgres_url + "?synchronous_commit=off") == "off"
