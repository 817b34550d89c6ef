"""Stateful property test: the memory queue against a deliberately simple model of the contract.

Hypothesis drives random sequences of enqueues (with priorities, delays and dedupe keys), claims,
completes, failures, retries, releases, cancels, clock moves and reaps, and after every step the
queue must agree with the model on every job's status, attempts and the claim order.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from clock import FakeClock
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from gaia.validator.core import InvalidTransition, JobError, JobStatus, Lease, LeaseLost, new_job
from gaia.validator.core.status import ACTIVE_STATUSES, CLAIMABLE_STATUSES
from gaia.validator.queues.memory import MemoryQueue

LEASE = 10.0
MAX_ATTEMPTS = 2
STALE = st.sampled_from([False, False, False, True])


@dataclass
class ModelJob:
    id: str
    priority: int
    not_before: float
    seq: int
    dedupe_key: str | None
    status: JobStatus = JobStatus.QUEUED
    attempts: int = 0
    token: int = 0
    expires: float = 0.0


class MemoryQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.clock = FakeClock(1_000_000.0)
        self.queue = MemoryQueue(clock=self.clock, result_ttl=1e12)
        self.model: dict[str, ModelJob] = {}
        self.leases: list[Lease] = []
        self.seq = 0

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coroutine):
        return self.loop.run_until_complete(coroutine)

    def active_with_key(self, key: str) -> ModelJob | None:
        return next(
            (j for j in self.model.values() if j.dedupe_key == key and j.status in ACTIVE_STATUSES),
            None,
        )

    @rule(
        priority=st.integers(-2, 2),
        delay=st.sampled_from([0.0, 0.0, 5.0, 30.0]),
        key=st.sampled_from([None, None, "a", "b"]),
        count=st.integers(1, 3),
    )
    def enqueue(self, priority: int, delay: float, key: str | None, count: int) -> None:
        for _ in range(count):
            self.enqueue_one(priority, delay, key)

    def enqueue_one(self, priority: int, delay: float, key: str | None) -> None:
        job = new_job(
            "t.x",
            {},
            priority=priority,
            delay=delay,
            dedupe_key=key,
            max_attempts=MAX_ATTEMPTS,
            now=self.clock(),
        )
        stored = self.run(self.queue.enqueue(job))
        existing = self.active_with_key(key) if key else None
        if existing is not None:
            assert stored.id == existing.id
            return
        assert stored.id == job.id
        self.seq += 1
        self.model[job.id] = ModelJob(job.id, priority, job.not_before, self.seq, key)

    @rule()
    def claim(self) -> None:
        now = self.clock()
        due = [
            j for j in self.model.values() if j.status in CLAIMABLE_STATUSES and j.not_before <= now
        ]
        lease = self.run(self.queue.claim("w", lease_seconds=LEASE))
        if not due:
            assert lease is None
            return
        best = min(due, key=lambda j: (-j.priority, j.not_before, j.seq))
        assert lease is not None and lease.job_id == best.id
        best.status, best.attempts, best.expires = JobStatus.RUNNING, best.attempts + 1, now + LEASE
        best.token = lease.token
        self.leases.append(lease)

    def held(self, lease: Lease) -> bool:
        job = self.model[lease.job_id]
        return job.status is JobStatus.RUNNING and job.token == lease.token

    # One rule per action, so settling is drawn as often as claiming. Mostly a held lease is
    # settled; one time in four a stale one, which the queue must reject (fencing).
    def pick(self, index: int, stale: bool) -> Lease:
        held = [lease for lease in self.leases if self.held(lease)]
        pool = [lease for lease in self.leases if not self.held(lease)] if stale else held
        pool = pool or self.leases
        return pool[-1 - index % len(pool)]

    @precondition(lambda self: self.leases)
    @rule(index=st.integers(0, 3), stale=STALE)
    def complete(self, index: int, stale: bool) -> None:
        self.settle(self.pick(index, stale), "complete")

    @precondition(lambda self: self.leases)
    @rule(index=st.integers(0, 3), stale=STALE)
    def fail(self, index: int, stale: bool) -> None:
        self.settle(self.pick(index, stale), "fail")

    @precondition(lambda self: self.leases)
    @rule(index=st.integers(0, 3), stale=STALE)
    def retry(self, index: int, stale: bool) -> None:
        self.settle(self.pick(index, stale), "retry")

    @precondition(lambda self: self.leases)
    @rule(index=st.integers(0, 3), stale=STALE)
    def not_ready(self, index: int, stale: bool) -> None:
        self.settle(self.pick(index, stale), "not_ready")

    @precondition(lambda self: self.leases)
    @rule(index=st.integers(0, 3), stale=STALE)
    def release(self, index: int, stale: bool) -> None:
        self.settle(self.pick(index, stale), "release")

    def settle(self, lease: Lease, action: str) -> None:
        job = self.model[lease.job_id]
        calls = {
            "complete": lambda: self.queue.complete(lease, 1),
            "fail": lambda: self.queue.fail(lease, JobError("x")),
            "retry": lambda: self.queue.retry(lease, at=self.clock() + 5, error=JobError("r")),
            "not_ready": lambda: self.queue.retry(lease, at=self.clock() + 5, count_attempt=False),
            "release": lambda: self.queue.release(lease),
        }
        if not self.held(lease):
            try:
                self.run(calls[action]())
            except LeaseLost:
                return
            raise AssertionError("a stale lease must be rejected")
        self.run(calls[action]())
        now = self.clock()
        if action == "complete":
            job.status = JobStatus.SUCCEEDED
        elif action == "fail":
            job.status = JobStatus.DEAD
        elif action == "retry":
            if job.attempts >= MAX_ATTEMPTS:
                job.status = JobStatus.DEAD
            else:
                job.status, job.not_before = JobStatus.RETRY_SCHEDULED, now + 5
        elif action == "not_ready":
            job.status, job.not_before, job.attempts = (
                JobStatus.RETRY_SCHEDULED,
                now + 5,
                job.attempts - 1,
            )
        else:
            job.status, job.attempts = JobStatus.QUEUED, job.attempts - 1
            job.not_before = min(job.not_before, now)

    @rule(seconds=st.sampled_from([1.0, 4.0, 6.0, 11.0, 31.0]))
    def advance(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def reap(self) -> None:
        now = self.clock()
        expired = [
            j for j in self.model.values() if j.status is JobStatus.RUNNING and j.expires < now
        ]
        assert self.run(self.queue.reap()) == len(expired)
        for job in expired:
            if job.attempts >= MAX_ATTEMPTS:
                job.status = JobStatus.DEAD
            else:
                job.status, job.not_before = JobStatus.QUEUED, min(job.not_before, now)

    @precondition(lambda self: self.model)
    @rule(index=st.integers(0, 50))
    def cancel(self, index: int) -> None:
        job = list(self.model.values())[index % len(self.model)]
        if job.status in ACTIVE_STATUSES:
            assert self.run(self.queue.cancel(job.id)).status is JobStatus.CANCELLED
            job.status = JobStatus.CANCELLED
        else:
            try:
                self.run(self.queue.cancel(job.id))
            except InvalidTransition:
                return
            raise AssertionError(f"cancelling a {job.status} job must be refused")

    @invariant()
    def statuses_and_attempts_agree(self) -> None:
        for model_job in self.model.values():
            job = self.run(self.queue.get(model_job.id))
            assert job is not None
            assert (job.status, job.attempts) == (model_job.status, model_job.attempts), job.id

    @invariant()
    def dedupe_keys_unique_over_active_states(self) -> None:
        for key in ("a", "b"):
            active = [
                j
                for j in self.model.values()
                if j.dedupe_key == key and j.status in ACTIVE_STATUSES
            ]
            assert len(active) <= 1

    @invariant()
    def stats_match(self) -> None:
        stats = self.run(self.queue.stats())
        for status in JobStatus:
            expected = sum(1 for j in self.model.values() if j.status is status)
            assert stats.total(status) == expected


TestMemoryQueueModel = MemoryQueueMachine.TestCase
TestMemoryQueueModel.settings = settings(max_examples=200, stateful_step_count=50, deadline=None)


async def test_a_refused_duplicate_id_leaves_its_dedupe_key_free() -> None:
    queue = MemoryQueue()
    first = await queue.enqueue(new_job("test.noop", {}, dedupe_key="k"))
    await queue.complete(await queue.claim("w"))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="already exists"):
        await queue.enqueue(first)  # the same id again: refused
    second = await queue.enqueue(new_job("test.noop", {}, dedupe_key="k"))
    assert second.id != first.id, "the key is free for a new job"
    stored = await queue.get(second.id)
    assert stored is not None and stored.status is JobStatus.QUEUED
