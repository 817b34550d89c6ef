"""A Task is a registered job type: its name, handler, payload schema and policies.

Two kinds of handler:
- ``ExecutorKind.ASYNC``: ``async def handler(ctx: TaskContext, payload: P) -> result``, run on the
  worker's event loop (I/O-bound work).
- ``ExecutorKind.PROCESS``: ``def handler(payload: P) -> result``, a module-level function run in
  the memory-aware process pool (CPU-bound work); the job's memory estimate drives admission.

A result is a :mod:`outcome <gaia.validator.core.outcomes>` or a plain JSON value (success).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Generic, TypeVar

from gaia.validator.core.context import TaskContext
from gaia.validator.core.errors import UnknownTask
from gaia.validator.core.job import JOB_TYPE_PATTERN, Job, new_job
from gaia.validator.core.json_value import JSONObject
from gaia.validator.core.payload import decode_payload, encode_payload
from gaia.validator.core.retry import RetryPolicy

P = TypeVar("P")

AsyncHandler = Callable[[TaskContext, P], Awaitable[object]]
ProcessHandler = Callable[[P], object]


class ExecutorKind(StrEnum):
    ASYNC = "async"
    PROCESS = "process"


@dataclass(frozen=True)
class Task(Generic[P]):
    name: str
    handler: AsyncHandler[P] | ProcessHandler[P]
    payload_type: type[P]
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    timeout: float = 300.0
    executor: ExecutorKind = ExecutorKind.ASYNC
    memory_mb: int = 0
    priority: int = 0

    def __post_init__(self) -> None:
        if not JOB_TYPE_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"task name {self.name!r} must be dotted lower-case, e.g. 'weather.era5'"
            )
        if not self.timeout > 0:
            raise ValueError(f"task {self.name}: timeout must be > 0, got {self.timeout}")
        object.__setattr__(self, "executor", ExecutorKind(self.executor))
        if self.memory_mb < 0:
            raise ValueError(f"task {self.name}: memory_mb must be >= 0, got {self.memory_mb}")

    def decode(self, payload: JSONObject) -> P:
        """The typed payload; raises PayloadError naming the bad field."""
        return decode_payload(self.payload_type, payload)

    def job(
        self,
        payload: P | JSONObject,
        *,
        dedupe_key: str | None = None,
        delay: float = 0.0,
        priority: int | None = None,
        memory_mb: int | None = None,
        correlation_id: str | None = None,
        metadata: JSONObject | None = None,
    ) -> Job:
        """A new job of this type carrying this task's policy (attempts, timeout, memory)."""
        encoded = encode_payload(payload)
        self.decode(encoded)  # refuse a bad payload at enqueue time, not only at run time
        return new_job(
            self.name,
            encoded,
            priority=self.priority if priority is None else priority,
            delay=delay,
            dedupe_key=dedupe_key,
            max_attempts=self.retry.max_attempts,
            timeout=self.timeout,
            memory_mb=self.memory_mb if memory_mb is None else memory_mb,
            correlation_id=correlation_id,
            metadata=metadata,
        )


class TaskRegistry:
    """The job types a worker knows, by name."""

    def __init__(self, tasks: list[Task[object]] | None = None) -> None:
        self._tasks: dict[str, Task[object]] = {}
        for task in tasks or []:
            self.add(task)

    def add(self, task: Task[P]) -> Task[P]:
        if task.name in self._tasks:
            raise ValueError(f"task {task.name!r} is already registered")
        self._tasks[task.name] = task  # type: ignore[assignment]
        return task

    def get(self, name: str) -> Task[object]:
        try:
            return self._tasks[name]
        except KeyError:
            known = ", ".join(sorted(self._tasks)) or "none"
            raise UnknownTask(
                f"no task is registered for job type {name!r} (known: {known})"
            ) from None

    def __contains__(self, name: object) -> bool:
        return name in self._tasks

    def names(self) -> list[str]:
        return sorted(self._tasks)

    def __len__(self) -> int:
        return len(self._tasks)
