"""The runtime's TaskContext: what a running handler sees (job, deadline, cancellation, logger)."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from gaia.validator.core.job import Job, Progress
from gaia.validator.core.task import Task

BeatFn = Callable[[Progress | None], Awaitable[None]]


@dataclass
class JobContext:
    """Implements :class:`gaia.validator.core.context.TaskContext` for one attempt of one job."""

    job: Job
    task: Task[object]
    deadline: float
    worker_id: str
    beat: BeatFn
    span_id: str = field(default_factory=lambda: os.urandom(8).hex())
    cancel_event: asyncio.Event = field(default_factory=asyncio.Event)
    last_progress: Progress | None = None

    @property
    def attempt(self) -> int:
        return self.job.attempts

    @property
    def correlation_id(self) -> str:
        return self.job.correlation_id

    @property
    def cancelled(self) -> bool:
        return self.cancel_event.is_set()

    @property
    def logger(self) -> logging.LoggerAdapter[logging.Logger]:
        return logging.LoggerAdapter(logging.getLogger(f"gaia.job.{self.job.type}"), self.fields())

    def fields(self) -> dict[str, object]:
        """The job fields every log line of this attempt carries."""
        return {
            "job_id": self.job.id,
            "job_type": self.job.type,
            "attempt": self.job.attempts,
            "correlation_id": self.job.correlation_id,
            "span_id": self.span_id,
            "worker_id": self.worker_id,
        }

    async def heartbeat(self) -> None:
        await self.beat(self.last_progress)

    async def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        self.last_progress = Progress(done=done, total=total, message=message)
        await self.beat(self.last_progress)
