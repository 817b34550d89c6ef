"""The job envelope: plain data that carries its own policy (priority, attempts, timeout, memory).

Priority: a higher number runs first; equal priorities run in order of ``not_before`` then
enqueue order. Times are POSIX seconds (``time.time()``).
"""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass, field, replace

from gaia.validator.core.json_value import JSONObject, JSONValue, ensure_json
from gaia.validator.core.status import JobStatus, check_transition

JOB_TYPE_PATTERN = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$")
MAX_PRIORITY = 1_000_000
DEFAULT_TIMEOUT_SECONDS = 300.0
DEFAULT_MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class JobError:
    """Why an attempt failed: a short message, the error's kind and, for exceptions, a traceback."""

    message: str
    kind: str = "error"
    traceback: str | None = None


@dataclass(frozen=True)
class Progress:
    """Progress a running job reported: ``done`` of ``total`` units (``total`` may be unknown)."""

    done: float
    total: float | None = None
    message: str = ""


@dataclass(frozen=True)
class Job:
    """One unit of work. Instances are immutable; a queue returns updated copies."""

    id: str
    type: str
    payload: JSONObject
    metadata: JSONObject = field(default_factory=dict)
    priority: int = 0
    status: JobStatus = JobStatus.QUEUED
    attempts: int = 0
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    not_before: float = 0.0
    dedupe_key: str | None = None
    timeout: float = DEFAULT_TIMEOUT_SECONDS
    memory_mb: int = 0
    correlation_id: str = ""
    created_at: float = 0.0
    updated_at: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None
    lease_token: int = 0
    lease_expires_at: float | None = None
    worker_id: str | None = None
    error: JobError | None = None
    result: JSONValue = None
    progress: Progress | None = None

    def __post_init__(self) -> None:
        validate_job(self)

    def transition(self, target: JobStatus, now: float, **changes: object) -> Job:
        """Return a copy in ``target`` status; raises InvalidTransition for a forbidden edge."""
        check_transition(self.status, target)
        return replace(self, status=target, updated_at=now, **changes)  # type: ignore[arg-type]

    @property
    def attempts_left(self) -> int:
        return max(0, self.max_attempts - self.attempts)


def validate_job(job: Job) -> None:
    """Raise ValueError naming the first field of ``job`` that is out of range."""
    if not job.id:
        raise ValueError("job.id must be a non-empty string")
    if not JOB_TYPE_PATTERN.fullmatch(job.type):
        raise ValueError(
            f"job.type {job.type!r} must be a dotted lower-case name such as 'weather.era5'"
        )
    if not isinstance(job.payload, dict):
        raise ValueError(f"job.payload must be a JSON object, got {type(job.payload).__name__}")
    if not -MAX_PRIORITY <= job.priority <= MAX_PRIORITY:
        raise ValueError(f"job.priority must lie in [-{MAX_PRIORITY}, {MAX_PRIORITY}]")
    if job.max_attempts < 1:
        raise ValueError(f"job.max_attempts must be >= 1, got {job.max_attempts}")
    if job.attempts < 0:
        raise ValueError(f"job.attempts must be >= 0, got {job.attempts}")
    if not job.timeout > 0:
        raise ValueError(f"job.timeout must be > 0 seconds, got {job.timeout}")
    if job.memory_mb < 0:
        raise ValueError(f"job.memory_mb must be >= 0, got {job.memory_mb}")
    if job.dedupe_key is not None and not job.dedupe_key:
        raise ValueError("job.dedupe_key must be None or a non-empty string")


def new_job_id() -> str:
    return uuid.uuid4().hex


def new_job(
    type: str,
    payload: JSONObject | None = None,
    *,
    priority: int = 0,
    delay: float = 0.0,
    not_before: float | None = None,
    dedupe_key: str | None = None,
    max_attempts: int = DEFAULT_MAX_ATTEMPTS,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    memory_mb: int = 0,
    correlation_id: str | None = None,
    metadata: JSONObject | None = None,
    job_id: str | None = None,
    now: float | None = None,
) -> Job:
    """Build a queued job, checking that payload and metadata are plain JSON."""
    created = time.time() if now is None else now
    checked_payload = ensure_json(payload if payload is not None else {}, "payload")
    checked_metadata = ensure_json(metadata if metadata is not None else {}, "metadata")
    if not isinstance(checked_payload, dict) or not isinstance(checked_metadata, dict):
        raise ValueError("payload and metadata must be JSON objects")
    ident = job_id or new_job_id()
    return Job(
        id=ident,
        type=type,
        payload=checked_payload,
        metadata=checked_metadata,
        priority=priority,
        not_before=not_before if not_before is not None else created + max(0.0, delay),
        dedupe_key=dedupe_key,
        max_attempts=max_attempts,
        timeout=timeout,
        memory_mb=memory_mb,
        correlation_id=correlation_id or ident,
        created_at=created,
        updated_at=created,
    )
