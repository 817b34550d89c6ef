"""What a running async handler can see and do: its job, deadline, cancellation, heartbeat,
progress and a logger bound to the job. The worker runtime provides the implementation."""

from __future__ import annotations

import logging
from typing import Protocol

from gaia.validator.core.job import Job


class TaskContext(Protocol):
    @property
    def job(self) -> Job: ...

    @property
    def attempt(self) -> int:
        """1 for the first attempt."""
        ...

    @property
    def correlation_id(self) -> str: ...

    @property
    def span_id(self) -> str:
        """Unique per attempt."""
        ...

    @property
    def deadline(self) -> float:
        """POSIX time at which the attempt's time limit expires."""
        ...

    @property
    def cancelled(self) -> bool:
        """True once the job was cancelled or its lease lost; the handler should stop soon."""
        ...

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]: ...

    async def heartbeat(self) -> None:
        """Extend the job's lease now (the worker also does so periodically)."""
        ...

    async def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Record progress; visible through the queue's job record and the admin CLI."""
        ...
