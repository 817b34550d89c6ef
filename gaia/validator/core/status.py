"""The job state machine: one place that knows which status may follow which.

    queued ──claim──▶ running ──▶ succeeded
      ▲  │              │ │ └──▶ dead ──requeue──▶ queued
      │  │              │ └────▶ cancelled
      │  └──cancel──▶ cancelled
      │                 ▼
      └── release ── retry_scheduled ──claim (when due)──▶ running

A running job goes back to ``queued`` when its claim is released (graceful shutdown) or its lease
expires and the reaper reclaims it.
"""

from __future__ import annotations

from enum import StrEnum

from gaia.validator.core.errors import InvalidTransition


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    RETRY_SCHEDULED = "retry_scheduled"
    DEAD = "dead"
    CANCELLED = "cancelled"


ACTIVE_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.RETRY_SCHEDULED}
)
"""A dedupe key is unique over these: at most one active job per key."""

TERMINAL_STATUSES: frozenset[JobStatus] = frozenset(
    {JobStatus.SUCCEEDED, JobStatus.DEAD, JobStatus.CANCELLED}
)

CLAIMABLE_STATUSES: frozenset[JobStatus] = frozenset({JobStatus.QUEUED, JobStatus.RETRY_SCHEDULED})

TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    JobStatus.QUEUED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.RUNNING: frozenset(
        {
            JobStatus.SUCCEEDED,
            JobStatus.RETRY_SCHEDULED,
            JobStatus.DEAD,
            JobStatus.CANCELLED,
            JobStatus.QUEUED,
        }
    ),
    JobStatus.RETRY_SCHEDULED: frozenset({JobStatus.RUNNING, JobStatus.CANCELLED}),
    JobStatus.DEAD: frozenset({JobStatus.QUEUED}),
    JobStatus.SUCCEEDED: frozenset(),
    JobStatus.CANCELLED: frozenset(),
}


def can_transition(current: JobStatus, target: JobStatus) -> bool:
    return target in TRANSITIONS[current]


def check_transition(current: JobStatus, target: JobStatus) -> None:
    """Raise :class:`InvalidTransition` unless ``current -> target`` is an edge of the machine."""
    if not can_transition(current, target):
        allowed = ", ".join(sorted(s.value for s in TRANSITIONS[current])) or "nothing (terminal)"
        raise InvalidTransition(
            f"job status cannot go from {current.value} to {target.value}; "
            f"{current.value} may go to: {allowed}"
        )
