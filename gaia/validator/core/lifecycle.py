"""The job lifecycle as pure functions: every queue backend written in Python applies exactly
these, and the SQL and Lua backends mirror them (the conformance suite holds them equal).

Each function takes the stored job and returns the updated copy; none touches I/O or clocks.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import replace

from gaia.validator.core.errors import DuplicateJob, InvalidTransition, LeaseLost
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease
from gaia.validator.core.status import CLAIMABLE_STATUSES, JobStatus

LEASE_EXPIRED = "lease_expired"
EXHAUSTED = "attempts_exhausted"


def batch_ids(jobs: Sequence[Job]) -> list[str]:
    """The ids of a batch to enqueue, refusing one that appears twice (a batch is stored all
    or nothing, so the whole batch is refused)."""
    ids = [job.id for job in jobs]
    if len(set(ids)) < len(ids):
        seen: set[str] = set()
        for job_id in ids:
            if job_id in seen:
                raise DuplicateJob(f"job id {job_id} appears twice in one batch")
            seen.add(job_id)
    return ids


def check_enqueueable(jobs: Iterable[Job]) -> None:
    """Only new, queued jobs enter a queue: raise naming the first job that is not one."""
    for job in jobs:
        if job.status is not JobStatus.QUEUED:
            raise InvalidTransition(
                f"only queued jobs can be enqueued, got job {job.id} in {job.status.value}"
            )


def is_due(job: Job, now: float) -> bool:
    return job.status in CLAIMABLE_STATUSES and job.not_before <= now


def sort_key(job: Job, sequence: int) -> tuple[int, float, int]:
    """Claim order: higher priority, then earlier not_before, then enqueue order."""
    return (-job.priority, job.not_before, sequence)


def claimed(job: Job, worker_id: str, now: float, lease_seconds: float) -> Job:
    return job.transition(
        JobStatus.RUNNING,
        now,
        attempts=job.attempts + 1,
        lease_token=job.lease_token + 1,
        lease_expires_at=now + lease_seconds,
        worker_id=worker_id,
        started_at=now,
        progress=None,
    )


def lease_for(job: Job) -> Lease:
    assert job.worker_id is not None and job.lease_expires_at is not None
    return Lease(
        job=job, token=job.lease_token, worker_id=job.worker_id, expires_at=job.lease_expires_at
    )


def check_lease(job: Job | None, lease: Lease, now: float) -> Job:
    """The stored job if ``lease`` still holds it, else raise LeaseLost (fencing).

    An expired lease still holds until the reaper reclaims it: the work was done, and nobody else
    can have claimed the job in between, so accepting it loses nothing and runs nothing twice.
    """
    if job is None:
        raise LeaseLost(f"job {lease.job_id} no longer exists")
    if job.status is not JobStatus.RUNNING or job.lease_token != lease.token:
        raise LeaseLost(
            f"job {lease.job_id}: lease token {lease.token} is stale "
            f"(job is {job.status.value}, token {job.lease_token})"
        )
    return job


def heartbeated(job: Job, now: float, lease_seconds: float, progress: Progress | None) -> Job:
    return replace(
        job,
        lease_expires_at=now + lease_seconds,
        updated_at=now,
        progress=progress if progress is not None else job.progress,
    )


def completed(job: Job, now: float, result: JSONValue) -> Job:
    return job.transition(
        JobStatus.SUCCEEDED, now, result=result, finished_at=now, lease_expires_at=None
    )


def retried(job: Job, now: float, at: float, error: JobError | None, count_attempt: bool) -> Job:
    attempts = job.attempts if count_attempt else max(0, job.attempts - 1)
    if count_attempt and attempts >= job.max_attempts:
        last = error or JobError("no attempt left", kind=EXHAUSTED)
        return dead(job, now, last)
    return job.transition(
        JobStatus.RETRY_SCHEDULED,
        now,
        attempts=attempts,
        not_before=max(at, now),
        error=error if error is not None else job.error,
        lease_expires_at=None,
    )


def dead(job: Job, now: float, error: JobError) -> Job:
    return job.transition(JobStatus.DEAD, now, error=error, finished_at=now, lease_expires_at=None)


def released(job: Job, now: float) -> Job:
    return job.transition(
        JobStatus.QUEUED,
        now,
        attempts=max(0, job.attempts - 1),
        lease_expires_at=None,
        worker_id=None,
        not_before=min(job.not_before, now),
    )


def cancelled(job: Job, now: float) -> Job:
    return job.transition(JobStatus.CANCELLED, now, finished_at=now, lease_expires_at=None)


def reclaimed(job: Job, now: float) -> Job:
    """A running job whose lease expired: its holder is presumed dead; that attempt counts."""
    error = JobError(
        f"lease expired at {job.lease_expires_at:.3f} while held by worker {job.worker_id}",
        kind=LEASE_EXPIRED,
    )
    if job.attempts >= job.max_attempts:
        return dead(job, now, error)
    return job.transition(
        JobStatus.QUEUED,
        now,
        error=error,
        lease_expires_at=None,
        worker_id=None,
        not_before=min(job.not_before, now),
    )


def requeued(job: Job, now: float) -> Job:
    """A dead job back to queued with a fresh attempt budget (dead jobs only)."""
    if job.status is not JobStatus.DEAD:
        raise InvalidTransition(
            f"only dead jobs can be requeued; job {job.id} is {job.status.value}"
        )
    return job.transition(
        JobStatus.QUEUED, now, attempts=0, not_before=now, finished_at=None, worker_id=None
    )


def is_expired(job: Job, now: float) -> bool:
    return (
        job.status is JobStatus.RUNNING
        and job.lease_expires_at is not None
        and job.lease_expires_at < now
    )


def claim_scope(
    types: Collection[str] | None, lease_seconds: float, count: int = 1
) -> list[str] | None:
    """Check a claim's arguments; return its job types sorted and deduplicated (None = all).

    Every backend calls this first, so bad arguments fail the same way everywhere.
    """
    if count < 1:
        raise ValueError(f"count must be >= 1, got {count}")
    if not lease_seconds > 0:
        raise ValueError(f"lease_seconds must be > 0, got {lease_seconds}")
    if isinstance(types, str):
        raise TypeError(f"types must be a collection of job types, not the string {types!r}")
    if types is None:
        return None
    chosen = sorted(set(types))
    if not chosen:
        raise ValueError("types must name at least one job type, or be None for every type")
    return chosen
