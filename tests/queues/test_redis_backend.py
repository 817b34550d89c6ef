"""What the Redis backend does beyond the conformance suite, against a real redis-server."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from clock import FakeClock

from gaia.validator.core import (
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
from gaia.validator.queues.redis import RedisQueue
from gaia.validator.queues.redis.pipelining import no_arguments
from gaia.validator.queues.redis.queue import ENQUEUE_CHUNK
from gaia.validator.queues.redis.records import enqueue_arguments
from gaia.validator.queues.redis.replies import complete_item

Opener = Callable[..., Awaitable[RedisQueue]]


@pytest.fixture
async def open_redis(redis_url: str, clock: FakeClock) -> AsyncIterator[Opener]:
    opened: list[RedisQueue] = []

    async def opener(name: str = "q", **options: str) -> RedisQueue:
        query = "&".join(f"{key}={value}" for key, value in {"queue": name, **options}.items())
        queue = await open_queue(f"{redis_url}?{query}", clock=clock)
        assert isinstance(queue, RedisQueue)
        opened.append(queue)
        return queue

    yield opener
    for queue in opened:
        await queue.close()


async def command(queue: RedisQueue, *words: str) -> object:
    return await queue._link.command(*words)


async def test_queue_names_namespace_every_key(open_redis: Opener, clock: FakeClock) -> None:
    alpha, beta = await open_redis("alpha"), await open_redis("beta")
    job = await alpha.enqueue(new_job("test.noop", {}, dedupe_key="k", now=clock()))
    assert await beta.get(job.id) is None
    assert await beta.claim("w") is None
    other = await beta.enqueue(new_job("test.noop", {}, dedupe_key="k", now=clock()))
    assert other.id != job.id, "dedupe keys are per queue"
    keys = await command(alpha, "KEYS", "*")
    assert isinstance(keys, list) and keys
    for key in keys:
        assert key.startswith((b"gaia:{alpha}:", b"gaia:{beta}:")), key


async def test_claim_many_takes_jobs_in_claim_order(open_redis: Opener, clock: FakeClock) -> None:
    queue = await open_redis()
    low = [new_job("kind.a", {"n": n}, now=clock()) for n in range(3)]
    high = new_job("kind.b", {}, priority=5, now=clock())
    await queue.enqueue_many([*low, high])
    first = await queue.claim_many("w", 2)
    assert [lease.job_id for lease in first] == [high.id, low[0].id]
    only_a = await queue.claim_many("w", 10, types=["kind.a"])
    assert [lease.job_id for lease in only_a] == [low[1].id, low[2].id]
    assert await queue.claim_many("w", 10) == []
    stored = await queue.get(low[2].id)
    assert stored is not None and stored.status is JobStatus.RUNNING and stored.attempts == 1


async def test_concurrent_single_claims_share_a_function_call(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    jobs = [new_job("test.noop", {"n": n}, now=clock()) for n in range(3)]
    await queue.enqueue_many(jobs)
    await command(queue, "CONFIG", "RESETSTAT")
    leases = await asyncio.gather(*(queue.claim(f"w{n}") for n in range(5)))
    stats = await command(queue, "INFO", "commandstats")
    assert isinstance(stats, dict) and stats["cmdstat_fcall"]["calls"] == 1
    assert [lease.job_id if lease else None for lease in leases] == [
        *(job.id for job in jobs),
        None,
        None,
    ]
    for n, lease in enumerate(leases[:3]):
        assert lease is not None and lease.worker_id == f"w{n}"
        stored = await queue.get(lease.job_id)
        assert stored is not None and stored.worker_id == f"w{n}"


async def test_unreadable_lifecycle_field_is_dead_lettered_by_the_claim_function(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    bad = await queue.enqueue(new_job("test.noop", {}, now=clock() - 1))
    good = await queue.enqueue(new_job("test.noop", {}, now=clock()))
    state = await command(queue, "HGET", queue.keys.job(bad.id), "state")
    assert isinstance(state, bytes)
    words = state.split(b" ")
    words[1] = b"many"  # the attempt count
    await command(queue, "HSET", queue.keys.job(bad.id), "state", b" ".join(words).decode())
    lease = await queue.claim("w")
    assert lease is not None and lease.job_id == good.id
    dead = await queue.get(bad.id)
    assert dead is not None and dead.status is JobStatus.DEAD
    assert dead.error is not None and "invalid" in dead.error.message
    assert dead.error.kind == "corrupt_record"
    kept = await command(queue, "HGET", queue.keys.job(bad.id), "corrupt_spec")
    assert isinstance(kept, bytes) and bad.id.encode() in kept, "the original bytes are kept"
    kept_state = await command(queue, "HGET", queue.keys.job(bad.id), "corrupt_state")
    assert isinstance(kept_state, bytes) and b" many " in kept_state


async def test_record_that_fails_the_codec_is_dead_lettered_by_the_client(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    bad = await queue.enqueue(new_job("test.noop", {}, now=clock() - 1))
    await command(queue, "HSET", queue.keys.job(bad.id), "spec", json.dumps({"id": bad.id}))
    assert await queue.claim("w") is None
    dead = await queue.get(bad.id)
    assert dead is not None and dead.status is JobStatus.DEAD
    assert dead.error is not None and "invalid" in dead.error.message.lower()
    assert (await queue.stats()).counts["test.noop"] == {JobStatus.DEAD: 1}


async def test_finished_records_are_purged_by_the_reaper_after_retention(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis(result_ttl="600", dead_ttl="1200")
    done = await queue.enqueue(new_job("test.noop", {}, now=clock()))
    await queue.complete(await queue.claim("w"))  # type: ignore[arg-type]
    failed = await queue.enqueue(new_job("test.noop", {}, now=clock()))
    await queue.fail(await queue.claim("w"), JobError("no"))  # type: ignore[arg-type]
    dead = await queue.enqueue(new_job("test.noop", {}, now=clock()))
    await queue.fail(await queue.claim("w"), JobError("no"))  # type: ignore[arg-type]
    await queue.requeue(failed.id)
    clock.advance(599)
    await queue.reap()
    assert await queue.get(done.id) is not None, "kept for its retention"
    assert await command(queue, "TTL", queue.keys.job(done.id)) == -1, "no expiry of Redis"
    clock.advance(2)
    await queue.reap()
    assert await queue.get(done.id) is None
    assert await queue.list_jobs(status=JobStatus.SUCCEEDED) == []
    assert JobStatus.SUCCEEDED not in (await queue.stats()).counts["test.noop"]
    assert (await queue.get(failed.id)) is not None, "requeued: no longer due for purging"
    assert (await queue.get(dead.id)) is not None, "dead jobs are kept for dead_ttl"
    clock.advance(600)
    await queue.reap()
    assert (await queue.get(dead.id)) is None


async def test_stale_holder_cannot_retry_release_or_heartbeat(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    job = await queue.enqueue(new_job("test.noop", {}, now=clock()))
    stale = await queue.claim("w-old", lease_seconds=5)
    assert stale is not None
    clock.advance(6)
    assert await queue.reap() == 1
    fresh = await queue.claim("w-new", lease_seconds=5)
    assert fresh is not None
    for step in (
        queue.retry(stale, at=clock()),
        queue.release(stale),
        queue.heartbeat(stale),
    ):
        with pytest.raises(LeaseLost, match="stale"):
            await step
    stored = await queue.get(job.id)
    assert stored is not None and stored.worker_id == "w-new" and stored.attempts == 2


async def test_heartbeat_progress_and_lease_are_stored(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    await queue.enqueue(new_job("test.noop", {}, now=clock()))
    lease = await queue.claim("w", lease_seconds=5)
    assert lease is not None
    clock.advance(3)
    renewed = await queue.heartbeat(lease, lease_seconds=5, progress=Progress(2, None, "half"))
    assert renewed.expires_at == clock() + 5
    stored = await queue.get(lease.job_id)
    assert stored is not None and stored.progress == Progress(2, None, "half")
    assert stored.lease_expires_at == renewed.expires_at
    done = await queue.complete(renewed, {"ok": True})
    assert done.progress == Progress(2, None, "half") and done.result == {"ok": True}


async def test_steps_resent_after_a_lost_reply_are_not_applied_twice(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    job = new_job("test.noop", {}, now=clock())

    async def resend(step: str, *item: str) -> object:
        """``item`` sent to function ``step`` marked as a re-send after a lost reply."""
        entry, _ = await queue._link._calls.batched(step, None, no_arguments, item, True)
        return entry

    await queue.enqueue(job)
    with pytest.raises(ValueError, match="already exists"):
        await queue.enqueue(job)
    again = await resend("enqueue", "1", *enqueue_arguments(job))
    assert isinstance(again, list) and again[0] != 0, "the stored job is returned"
    assert (await queue.stats()).total(JobStatus.QUEUED) == 1
    lease = await queue.claim("w")
    assert lease is not None
    await queue.complete(lease, "once")
    with pytest.raises(LeaseLost):
        await queue.complete(lease, "twice")
    whole = await resend("complete", *complete_item(lease, '"twice"'))
    assert isinstance(whole, list) and b'"once"' in whole, "the stored record is returned"
    stored = await queue.get(job.id)
    assert stored is not None and stored.result == "once"


async def test_batch_with_a_repeated_or_existing_id_stores_nothing(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    existing = await queue.enqueue(new_job("test.noop", {}, now=clock()))
    fresh = new_job("test.noop", {}, now=clock())
    with pytest.raises(ValueError, match="already exists"):
        await queue.enqueue_many([fresh, existing])
    with pytest.raises(ValueError, match="twice"):
        await queue.enqueue_many([fresh, fresh])
    assert await queue.get(fresh.id) is None
    many = [new_job("test.noop", {}, now=clock()) for _ in range(ENQUEUE_CHUNK + 1)]
    with pytest.raises(ValueError, match=f"{existing.id} already exists"):
        await queue.enqueue_many([*many, existing])
    assert (await queue.stats()).total(JobStatus.QUEUED) == 1, "no part was stored"
    stored = await queue.enqueue_many(many)
    assert [job.id for job in stored] == [job.id for job in many]
    assert (await queue.stats()).total(JobStatus.QUEUED) == len(many) + 1
    assert await command(queue, "KEYS", f"{queue.keys.prefix}batch:*") == [], "marks removed"
    later = [new_job("test.noop", {}, now=clock()) for _ in range(2 * ENQUEUE_CHUNK)]
    await command(queue, "HSET", queue.keys.job(later[-1].id), "spec", "{}")  # stored meanwhile
    with pytest.raises(ValueError, match=f"{later[-1].id} already exists"):
        await queue.enqueue_many(later)
    assert (await queue.stats()).total(JobStatus.QUEUED) == len(many) + 1


async def test_requeue_refused_while_another_job_holds_the_dedupe_key(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    first = await queue.enqueue(new_job("test.noop", {}, dedupe_key="k", now=clock()))
    await queue.fail(await queue.claim("w"), JobError("x"))  # type: ignore[arg-type]
    second = await queue.enqueue(new_job("test.noop", {}, dedupe_key="k", now=clock()))
    assert second.id != first.id
    with pytest.raises(InvalidTransition, match=f"held by active job {second.id}"):
        await queue.requeue(first.id)


async def test_oldest_due_age_counts_due_jobs_not_yet_promoted(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    await queue.enqueue(new_job("test.noop", {}, delay=10, now=clock()))
    assert (await queue.stats()).oldest_due_age is None
    clock.advance(25)
    assert (await queue.stats()).oldest_due_age == pytest.approx(15.0, abs=0.01)


async def test_list_jobs_merges_types_in_enqueue_order(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    made = [new_job(f"kind.{'ab'[n % 2]}", {"n": n}, now=clock()) for n in range(6)]
    for job in made:
        await queue.enqueue(job)
    assert [job.id for job in await queue.list_jobs(limit=4)] == [job.id for job in made[:4]]
    only_b = await queue.list_jobs(type="kind.b", status=JobStatus.QUEUED)
    assert [job.id for job in only_b] == [job.id for job in made[1::2]]


async def test_idle_waiting_claimer_does_not_poll(open_redis: Opener) -> None:
    queue = await open_redis()
    await command(queue, "CONFIG", "RESETSTAT")
    assert await queue.claim("w", wait=1.0) is None
    stats = await command(queue, "INFO", "commandstats")
    assert isinstance(stats, dict)
    calls = stats.get("cmdstat_fcall", {}).get("calls", 0)
    waits = stats.get("cmdstat_blpop", {}).get("calls", 0)
    assert calls <= 3 and 1 <= waits <= 2, stats


async def test_claimer_wakes_on_an_enqueue_by_another_client(
    open_redis: Opener, clock: FakeClock
) -> None:
    waiter, producer = await open_redis(), await open_redis()
    claiming = asyncio.create_task(waiter.claim("w", types=["kind.a", "kind.b"], wait=60.0))
    await asyncio.sleep(0.2)
    job = await producer.enqueue(new_job("kind.b", {}, now=clock()))
    lease = await claiming
    assert lease is not None and lease.job_id == job.id


async def test_close_ends_a_waiting_claim_and_refuses_further_calls(open_redis: Opener) -> None:
    queue = await open_redis()
    claiming = asyncio.create_task(queue.claim("w", wait=60.0))
    await asyncio.sleep(0.2)
    await queue.close()
    assert await claiming is None
    with pytest.raises(QueueClosed):
        await queue.stats()
    with pytest.raises(QueueClosed):
        await queue.claim("w")


async def test_every_step_returns_the_job_as_stored(open_redis: Opener, clock: FakeClock) -> None:
    """The client builds returned jobs from compact replies; each must equal a fresh read."""
    queue = await open_redis()

    async def same(job: object) -> None:
        assert isinstance(job, Job)
        assert await queue.get(job.id) == job

    unusual = new_job(
        "kind.a",
        {"x": [1, 2.5, "y"]},
        priority=7,
        dedupe_key="key with spaces",
        max_attempts=4,
        timeout=12.5,
        memory_mb=64,
        correlation_id="corr",
        metadata={"m": {}},
        now=clock(),
    )
    for job in await queue.enqueue_many([unusual, new_job("kind.a", {}, now=clock())]):
        await same(job)
    lease = await queue.claim("worker with spaces %20", lease_seconds=7)
    assert lease is not None and lease.job_id == unusual.id
    await same(lease.job)
    clock.advance(1)
    lease = await queue.heartbeat(lease, lease_seconds=9, progress=Progress(1, 2, "m"))
    await same(lease.job)
    await same(await queue.retry(lease, at=clock() + 5, error=JobError("e", "k", "tb")))
    clock.advance(6)
    lease = await queue.claim("w2")
    assert lease is not None and lease.job.error == JobError("e", "k", "tb")
    await same(lease.job)
    await same(await queue.release(lease))
    lease = await queue.claim("w3")
    assert lease is not None
    await same(await queue.complete(lease, {"r": (1, 2)}))
    other = await queue.claim("w4")
    assert other is not None
    await same(await queue.fail(other, JobError("no")))
    await same(await queue.requeue(other.job_id))
    await same(await queue.cancel(other.job_id))


async def test_ready_members_built_at_enqueue_match_those_of_later_steps(
    open_redis: Opener, clock: FakeClock
) -> None:
    """Enqueue builds a job's ready-set member from the client's figure of its due time, cancel
    rebuilds it in Lua from the stored text: they must agree to the byte for odd times too."""
    queue = await open_redis()
    odd = [0.1, 1e-7, 1234.5678901234, 1700000000.123457, clock() - 0.000001]
    jobs = [new_job("test.noop", {}, not_before=t, now=clock()) for t in odd]
    await queue.enqueue_many(jobs)
    assert await command(queue, "ZCARD", queue.keys.ready("test.noop")) == len(jobs)
    for job in jobs:
        await queue.cancel(job.id)
    assert await command(queue, "ZCARD", queue.keys.ready("test.noop")) == 0


async def test_a_part_refused_on_its_own_refuses_the_parts_after_it(
    open_redis: Opener, clock: FakeClock
) -> None:
    """The parts of a large batch, sent one by one: an id stored between two parts refuses
    its part and removes the batch's mark, so the parts after it are refused too."""
    queue = await open_redis()
    a, b, c = (new_job("test.noop", {"n": n}, now=clock()) for n in range(3))

    async def part(role: str, job: Job, ids: list[str]) -> object:
        words = [role, "tok", str(len(ids)), *ids, "1", *enqueue_arguments(job)]
        ((reply, _),) = await queue._link.stream("enqueue_part", lambda: [words])
        assert isinstance(reply, list)
        return reply[0]

    assert await part("first", a, [a.id, b.id, c.id]) == [0]
    await command(queue, "HSET", queue.keys.job(b.id), "spec", "{}")  # stored meanwhile
    refused = await part("next", b, [])
    assert "already exists" in str(refused)
    assert "refused" in str(await part("last", c, []))
    assert await command(queue, "KEYS", f"{queue.keys.prefix}batch:*") == []
    assert await queue.get(a.id) is not None and await queue.get(c.id) is None


async def test_complete_and_claim_fuses_and_hands_back_what_a_failed_completion_got(
    open_redis: Opener, clock: FakeClock
) -> None:
    queue = await open_redis()
    assert queue.fuses_complete_and_claim
    first, second, third = (new_job("test.noop", {"n": n}, now=clock()) for n in range(3))
    await queue.enqueue_many([first, second, third])
    lease = await queue.claim("w")
    assert lease is not None and lease.job_id == first.id
    await command(queue, "CONFIG", "RESETSTAT")
    done, leases = await queue.complete_and_claim(lease, "ok")
    assert done.status is JobStatus.SUCCEEDED and [n.job_id for n in leases] == [second.id]
    stats = await command(queue, "INFO", "commandstats")
    assert isinstance(stats, dict) and stats["cmdstat_fcall"]["calls"] == 2, "sent together"
    # A stale lease: the claim asks for the job to be still held, so it takes nothing.
    with pytest.raises(LeaseLost):
        await queue.complete_and_claim(lease, "again")
    untouched = await queue.get(third.id)
    assert untouched is not None and untouched.started_at is None and untouched.attempts == 0
    # A completion that fails after the claim ran (here: a result that is not JSON) hands the
    # new lease back, its attempt given back too.
    with pytest.raises(TypeError):
        await queue.complete_and_claim(leases[0], {"not json": object()})  # type: ignore[dict-item]
    released = await queue.get(third.id)
    assert released is not None and released.status is JobStatus.QUEUED
    assert released.attempts == 0 and released.worker_id is None
    still = await queue.get(second.id)
    assert still is not None and still.status is JobStatus.RUNNING
