"""SQLite runtime behaviour: group commit isolates failures, lock contention is retried,
an abandoned claim is handed back, close is final, retention options apply."""

from __future__ import annotations

import asyncio
import fcntl
import os
import sqlite3
import threading
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from clock import FakeClock

from gaia.validator.core import Job, JobError, JobStatus, LeaseLost, QueueClosed, new_job
from gaia.validator.queues import open_queue
from gaia.validator.queues.sqlite import SqliteQueue
from gaia.validator.queues.sqlite.database import WAL_SIZE_LIMIT, Kind
from gaia.validator.queues.sqlite.doorbell import SUFFIX, wake_directory
from gaia.validator.queues.sqlite.gate import gate_path


async def _open(path: Path, query: str = "", clock: FakeClock | None = None) -> SqliteQueue:
    url = f"sqlite:///{path}" + (f"?{query}" if query else "")
    queue = await open_queue(url) if clock is None else await open_queue(url, clock=clock)
    assert isinstance(queue, SqliteQueue)
    return queue


@pytest.fixture
async def queue(tmp_path: Path) -> AsyncIterator[SqliteQueue]:
    opened = await _open(tmp_path / "q.db")
    yield opened
    await opened.close()


@contextmanager
def write_lock_held(path: Path) -> Iterator[threading.Event]:
    """Another connection holds the database's write lock until the yielded event is set."""
    locked, release = threading.Event(), threading.Event()

    def hold() -> None:
        connection = sqlite3.connect(path, isolation_level=None)
        connection.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(30)
        connection.execute("ROLLBACK")
        connection.close()

    holder = threading.Thread(target=hold)
    holder.start()
    locked.wait(30)
    try:
        yield release
    finally:
        release.set()
        holder.join()


async def test_a_failing_change_does_not_undo_the_changes_committed_with_it(
    tmp_path: Path,
) -> None:
    queue = await _open(tmp_path / "q.db", "busy_timeout=0.05&retry_for=30")
    try:
        await queue.enqueue_many([new_job("test.noop", {"n": n}) for n in range(3)])
        stale = await queue.claim("w")
        assert stale is not None
        await queue.release(stale)
        fresh = await queue.claim("w")
        other = await queue.claim("w")
        assert fresh is not None and other is not None and fresh.job_id == stale.job_id
        duplicate = await queue.enqueue(new_job("test.noop", {}))
        with write_lock_held(queue.options.path) as release:
            # The database thread is stuck on this first change while the five below pile up
            # behind it, so they are committed as one group.
            blocker = asyncio.create_task(queue.enqueue(new_job("test.noop", {"n": 8})))
            await asyncio.sleep(0.1)
            group = asyncio.gather(
                queue.complete(stale, "stale"),
                queue.complete(fresh, "fresh"),
                queue.enqueue(duplicate),
                queue.enqueue(new_job("test.noop", {"n": 9})),
                queue.fail(other, JobError("x")),
                return_exceptions=True,
            )
            await asyncio.sleep(0.1)
            release.set()
            await blocker
            results = await group
        assert isinstance(results[0], LeaseLost)
        assert isinstance(results[1], Job) and results[1].status is JobStatus.SUCCEEDED
        assert isinstance(results[2], ValueError) and "stored only once" in str(results[2])
        assert isinstance(results[3], Job)
        assert isinstance(results[4], Job) and results[4].status is JobStatus.DEAD
        stored = await queue.get(fresh.job_id)
        assert stored is not None and stored.result == "fresh"
        # queued: the third original job, the duplicate's first copy, n=8 and n=9
        assert (await queue.stats()).total(JobStatus.QUEUED) == 4
    finally:
        await queue.close()


async def test_lock_contention_past_the_busy_timeout_is_retried(tmp_path: Path) -> None:
    queue = await _open(tmp_path / "q.db", "busy_timeout=0.05&retry_for=30")
    try:
        with write_lock_held(queue.options.path) as release:
            enqueue = asyncio.create_task(queue.enqueue(new_job("test.noop", {})))
            await asyncio.sleep(0.3)  # several busy timeouts pass while the lock is held
            assert not enqueue.done()
            release.set()
            stored = await enqueue
        assert await queue.get(stored.id) == stored
    finally:
        await queue.close()


async def test_without_retry_budget_lock_contention_is_reported(tmp_path: Path) -> None:
    queue = await _open(tmp_path / "q.db", "busy_timeout=0.05&retry_for=0")
    try:
        with (
            write_lock_held(queue.options.path),
            pytest.raises(sqlite3.OperationalError, match="locked"),
        ):
            await queue.enqueue(new_job("test.noop", {}))
        assert await queue.list_jobs() == [], "nothing half-written"
    finally:
        await queue.close()


async def test_a_cancelled_claim_hands_its_job_back(tmp_path: Path) -> None:
    queue = await _open(tmp_path / "q.db", "busy_timeout=0.05&retry_for=30")
    try:
        job = await queue.enqueue(new_job("test.noop", {}))
        with write_lock_held(queue.options.path) as release:
            claimer = asyncio.create_task(queue.claim("w"))
            await asyncio.sleep(0.1)  # the claim is on the database thread, waiting for the lock
            claimer.cancel()
            with pytest.raises(asyncio.CancelledError):
                await claimer
            release.set()
        for _ in range(500):
            stored = await queue.get(job.id)
            assert stored is not None
            if stored.status is JobStatus.QUEUED and stored.worker_id is None:
                break
            await asyncio.sleep(0.01)
        assert stored.status is JobStatus.QUEUED and stored.attempts == 0
        lease = await queue.claim("w2")
        assert lease is not None and lease.job_id == job.id
    finally:
        await queue.close()


async def test_close_wakes_waiters_and_makes_every_call_fail(tmp_path: Path) -> None:
    queue = await _open(tmp_path / "q.db")
    waiter = asyncio.create_task(queue.claim("w", wait=30.0))
    await asyncio.sleep(0.05)
    fifos = list(wake_directory(queue.options.path).glob(f"*{SUFFIX}"))
    assert len(fifos) == 1, "a waiting claimer listens on its own FIFO"
    await queue.close()
    assert await waiter is None
    assert not fifos[0].exists()
    job = new_job("test.noop", {})
    for call in (
        queue.enqueue(job),
        queue.claim("w"),
        queue.get(job.id),
        queue.stats(),
        queue.reap(),
        queue.cancel(job.id),
    ):
        with pytest.raises(QueueClosed):
            await call
    await queue.close()  # idempotent


async def test_claim_rejects_a_string_for_types(queue: SqliteQueue) -> None:
    with pytest.raises(TypeError, match="not the string"):
        await queue.claim("w", types="kind.a")


async def test_retention_options_purge_succeeded_and_dead_jobs(tmp_path: Path) -> None:
    clock = FakeClock()
    queue = await _open(tmp_path / "q.db", "result_ttl=60&dead_ttl=120", clock)
    try:
        await queue.enqueue_many(
            [new_job("test.noop", {}, now=clock()), new_job("test.noop", {}, now=clock())]
        )
        first = await queue.claim("w")
        second = await queue.claim("w")
        assert first is not None and second is not None
        await queue.complete(first)
        await queue.fail(second, JobError("x"))
        clock.advance(61)
        await queue.reap()
        assert await queue.get(first.job_id) is None
        assert await queue.get(second.job_id) is not None
        clock.advance(60)
        await queue.reap()
        assert await queue.get(second.job_id) is None
    finally:
        await queue.close()


async def test_delayed_job_wakes_a_waiting_claimer_at_its_due_time(tmp_path: Path) -> None:
    """The wait is cut short at the next job's due time, not only by enqueues."""
    queue = await _open(tmp_path / "q.db", "idle_recheck=600")
    try:
        job = await queue.enqueue(new_job("test.noop", {}, delay=0.2))
        lease = await queue.claim("w", wait=30.0)
        assert lease is not None and lease.job_id == job.id
    finally:
        await queue.close()


async def test_claims_relax_fsync_only_for_their_own_commit(queue: SqliteQueue) -> None:
    """Under synchronous=full a claim-only group commits without fsync; the connection is
    back at FULL right after, so the next enqueue or completion is fsync'd as promised."""
    assert queue.options.synchronous == "full"

    async def level() -> int:
        return int(
            await queue._db.run(
                lambda db: db.execute("PRAGMA synchronous").fetchone()[0], Kind.READ
            )
        )

    await queue.enqueue(new_job("test.noop", {}))
    assert await level() == 2  # FULL
    lease = await queue.claim("w")
    assert lease is not None
    assert await level() == 2
    await queue.heartbeat(lease)
    await queue.complete(lease)
    assert await level() == 2


async def test_commits_wait_their_turn_at_the_writer_gate(queue: SqliteQueue) -> None:
    """Another process's database thread holding the gate (here: this test) makes a commit
    wait in the kernel, not fail; it goes through as soon as the gate is let go."""
    path = gate_path(queue.options.path)
    await queue.enqueue(new_job("test.noop", {}))  # creates the gate file
    assert path.exists()
    descriptor = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        pending = asyncio.create_task(queue.enqueue(new_job("test.noop", {"n": 2})))
        await asyncio.sleep(0.2)
        assert not pending.done(), "the commit waits for the gate"
        fcntl.flock(descriptor, fcntl.LOCK_UN)
        stored = await pending
    finally:
        os.close(descriptor)
    assert await queue.get(stored.id) == stored


async def test_connection_settings_follow_the_url(tmp_path: Path) -> None:
    queue = await _open(tmp_path / "q.db", "busy_timeout=2.5&synchronous=normal")
    try:

        def settings(db: sqlite3.Connection) -> tuple[object, ...]:
            return tuple(
                db.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("journal_mode", "synchronous", "busy_timeout", "journal_size_limit")
            )

        assert await queue._db.run(settings, Kind.READ) == ("wal", 1, 2500, WAL_SIZE_LIMIT)
    finally:
        await queue.close()
