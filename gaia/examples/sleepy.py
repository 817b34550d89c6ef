"""A task module for drain and crash tests: jobs that sleep, and record their runs in a file.

``example.sleep`` sleeps ``seconds`` and, when ``log`` is given, appends ``<job id>\\n`` to that
file when it finishes, so a test can count how often each job's effect happened.
"""

from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass

from gaia.validator.core import RetryPolicy, Task, TaskContext, TaskRegistry


@dataclass(frozen=True)
class Sleep:
    seconds: float
    log: str | None = None


async def sleep(ctx: TaskContext, payload: Sleep) -> float:
    await asyncio.sleep(payload.seconds)
    if payload.log:
        record_effect(payload.log, ctx.job.id)
    return payload.seconds


def record_effect(path: str, job_id: str) -> None:
    """Append one line atomically (O_APPEND, one write), safe across processes."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{job_id}\n".encode())
    finally:
        os.close(fd)


SLEEP = Task(
    "example.sleep",
    sleep,
    Sleep,
    retry=RetryPolicy(max_attempts=20, base_delay=0.1, max_delay=1.0),
    timeout=60.0,
)
registry = TaskRegistry([SLEEP])  # type: ignore[list-item]
