"""What a handler's attempt ended in, as values the worker settles onto the queue.

A handler returns one of these (or a plain JSON value, meaning :class:`Success`), or raises:
:class:`PermanentError` becomes :class:`Fail`; any other exception becomes :class:`Errored`, which
the task's retry policy turns into a :class:`Retry` or, when attempts are used up, a :class:`Fail`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from gaia.validator.core.job import JobError
from gaia.validator.core.json_value import JSONValue


@dataclass(frozen=True)
class Success:
    value: JSONValue = None


@dataclass(frozen=True)
class Retry:
    """Try again no earlier than ``after`` seconds from now; counts as an attempt."""

    after: float
    reason: str
    error: JobError | None = None


@dataclass(frozen=True)
class Fail:
    """Permanent failure: the job is dead-lettered with this error."""

    error: JobError


@dataclass(frozen=True)
class NotReady:
    """The job's inputs are not available yet: run again at ``until`` (POSIX seconds).

    Does not count as an attempt."""

    until: float
    reason: str = ""


@dataclass(frozen=True)
class Errored:
    """An exception escaped the handler (or a time limit or a crashed child stopped it)."""

    error: JobError
    retryable: bool = True


Outcome: TypeAlias = Success | Retry | Fail | NotReady | Errored


@dataclass(frozen=True)
class TaskResult:
    """The record of one attempt: which job, which attempt, what it ended in, and when."""

    job_id: str
    job_type: str
    attempt: int
    outcome: Outcome
    started_at: float
    finished_at: float

    @property
    def duration(self) -> float:
        return self.finished_at - self.started_at


class PermanentError(Exception):
    """Raise from a handler to dead-letter the job at once, without retries."""


class RetryableError(Exception):
    """Raise from a handler to ask for a retry after ``after`` seconds (policy delay if None)."""

    def __init__(self, message: str, after: float | None = None) -> None:
        super().__init__(message)
        self.after = after
