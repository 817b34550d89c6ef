"""The Queue contract every backend implements (memory, SQLite, PostgreSQL, Redis).

Semantics, identical on every backend and tested by one conformance suite:

- **Order.** ``claim`` returns the due job with the highest priority, then the earliest
  ``not_before``, then the earliest enqueued. A job is due when ``not_before <= now``.
- **Leases and fencing.** A claim moves the job to ``running``, counts an attempt and returns a
  :class:`Lease` whose ``token`` is new for that claim. ``heartbeat`` extends it. Every call that
  takes a lease checks the token: a holder whose lease expired and was reclaimed, or whose job was
  cancelled, gets :class:`~gaia.validator.core.errors.LeaseLost` and changes nothing.
- **Reaping.** ``reap`` puts running jobs whose lease expired back to ``queued`` (or ``dead`` when
  no attempt is left: a crash is an attempt), and deletes finished jobs past result retention.
- **Retries.** ``retry`` schedules the job at ``at``. When the failed attempt was the last one the
  job goes ``dead`` instead; the backend enforces ``max_attempts``, callers cannot exceed it.
  ``count_attempt=False`` (not-ready) gives the attempt back.
- **Dedupe.** At most one job per ``dedupe_key`` in an active state (queued, running,
  retry-scheduled). Enqueueing a duplicate inserts nothing and returns the active job. Once that
  job is finished (succeeded, dead or cancelled) the key is free again: recurring work never stops.
- **Cancel.** A queued or retry-scheduled job is cancelled at once; a running one is marked
  cancelled and its holder learns it at its next heartbeat (LeaseLost).
- **Release.** A graceful shutdown hands a claim back: the job is ``queued`` again at once and the
  attempt is not counted.
- **Complete and claim.** ``complete_and_claim`` is ``complete`` followed by a non-waiting
  ``claim_many`` for the same worker. A backend that does both in one round trip says so with
  ``fuses_complete_and_claim``; the WorkerPool then hands a slot its next job that way.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from types import TracebackType

from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.status import JobStatus


@dataclass(frozen=True)
class Lease:
    """Proof that a worker holds a claimed job; ``token`` fences stale holders."""

    job: Job
    token: int
    worker_id: str
    expires_at: float

    @property
    def job_id(self) -> str:
        return self.job.id


@dataclass(frozen=True)
class QueueStats:
    """Counts by job type and status, and how long the oldest due job has waited (seconds)."""

    counts: dict[str, dict[JobStatus, int]] = field(default_factory=dict)
    oldest_due_age: float | None = None
    expired_leases: int = 0

    def total(self, status: JobStatus) -> int:
        return sum(by_status.get(status, 0) for by_status in self.counts.values())


class Queue(ABC):
    """Abstract async job queue; see the module docstring for the semantics."""

    url: str = ""
    fuses_complete_and_claim: bool = False
    """True when ``complete_and_claim`` costs one round trip (else it is two calls)."""

    @abstractmethod
    async def enqueue(self, job: Job) -> Job:
        """Store ``job``; with an active duplicate of its dedupe key, return that job instead."""

    @abstractmethod
    async def enqueue_many(self, jobs: Sequence[Job]) -> list[Job]:
        """Store many jobs at once; the result lists, per input, the stored (or active) job."""

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        if cls.claim is Queue.claim and cls.claim_many is Queue.claim_many:
            # each default is written in terms of the other
            raise TypeError(f"{cls.__name__} must implement claim or claim_many (or both)")

    async def claim(
        self,
        worker_id: str,
        *,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        wait: float = 0.0,
    ) -> Lease | None:
        """Claim the next due job of ``types`` (all types if None), waiting up to ``wait`` s.

        This default is ``claim_many`` with a count of one."""
        leases = await self.claim_many(
            worker_id, 1, types=types, lease_seconds=lease_seconds, wait=wait
        )
        return leases[0] if leases else None

    async def claim_many(
        self,
        worker_id: str,
        count: int,
        *,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
        wait: float = 0.0,
    ) -> list[Lease]:
        """Claim up to ``count`` jobs: wait up to ``wait`` s for the first, then take what is due.

        Backends override this with one round trip; this default claims one at a time. A
        backend implements at least one of ``claim`` and ``claim_many``.
        """
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")  # the rest: claim() checks
        first = await self.claim(worker_id, types=types, lease_seconds=lease_seconds, wait=wait)
        leases = [] if first is None else [first]
        while leases and len(leases) < count:
            lease = await self.claim(worker_id, types=types, lease_seconds=lease_seconds)
            if lease is None:
                break
            leases.append(lease)
        return leases

    async def complete_and_claim(
        self,
        lease: Lease,
        result: JSONValue = None,
        *,
        count: int = 1,
        types: Collection[str] | None = None,
        lease_seconds: float = 30.0,
    ) -> tuple[Job, list[Lease]]:
        """``complete(lease, result)``, then up to ``count`` due jobs for the same worker (no
        waiting). A completion that raises (LeaseLost) claims nothing."""
        job = await self.complete(lease, result)
        leases = await self.claim_many(
            lease.worker_id, count, types=types, lease_seconds=lease_seconds
        )
        return job, leases

    @abstractmethod
    async def heartbeat(
        self, lease: Lease, *, lease_seconds: float = 30.0, progress: Progress | None = None
    ) -> Lease:
        """Extend the lease to now + ``lease_seconds``; raise LeaseLost if it is no longer held."""

    @abstractmethod
    async def complete(self, lease: Lease, result: JSONValue = None) -> Job:
        """Mark the job succeeded with ``result``."""

    @abstractmethod
    async def retry(
        self, lease: Lease, *, at: float, error: JobError | None = None, count_attempt: bool = True
    ) -> Job:
        """Schedule another attempt at ``at``; dead-letter instead when no attempt is left."""

    @abstractmethod
    async def fail(self, lease: Lease, error: JobError) -> Job:
        """Dead-letter the job with ``error``."""

    @abstractmethod
    async def release(self, lease: Lease) -> Job:
        """Hand the claim back (shutdown): queued again at once, attempt not counted."""

    @abstractmethod
    async def cancel(self, job_id: str) -> Job:
        """Cancel a queued, retry-scheduled or running job."""

    @abstractmethod
    async def requeue(self, job_id: str) -> Job:
        """Move a dead job back to queued with a fresh attempt budget."""

    @abstractmethod
    async def get(self, job_id: str) -> Job | None:
        """The job (with its result and last error), or None if unknown or purged."""

    @abstractmethod
    async def list_jobs(
        self, *, status: JobStatus | None = None, type: str | None = None, limit: int = 100
    ) -> list[Job]:
        """Jobs filtered by status and type, oldest first (for the admin CLI)."""

    @abstractmethod
    async def stats(self) -> QueueStats:
        """Counts by type and status, oldest due age, expired leases."""

    @abstractmethod
    async def reap(self) -> int:
        """Reclaim expired leases and purge finished jobs past retention; returns jobs reclaimed."""

    @abstractmethod
    async def close(self) -> None:
        """Release connections; further calls raise QueueClosed."""

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
