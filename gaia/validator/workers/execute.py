"""Run one attempt's handler and turn whatever happens into an :data:`Outcome` value.

Async handlers run on the event loop; process handlers run in the process pool through the
:class:`ProcessRunner` protocol (the memory-aware ProcessPool implements it). Nothing here
retries: that is the Retries middleware's decision.
"""

from __future__ import annotations

import asyncio
import time
import traceback
from collections.abc import Awaitable, Callable
from typing import Protocol

from gaia.validator.core.errors import PayloadError
from gaia.validator.core.job import JobError
from gaia.validator.core.json_value import ensure_json
from gaia.validator.core.outcomes import (
    Errored,
    Fail,
    NotReady,
    Outcome,
    PermanentError,
    Retry,
    RetryableError,
    Success,
)
from gaia.validator.core.task import ExecutorKind
from gaia.validator.workers.context import JobContext

OUTCOME_TYPES = (Success, Retry, Fail, NotReady, Errored)


class ProcessRunner(Protocol):
    async def run(
        self,
        fn: Callable[..., object],
        /,
        *args: object,
        timeout: float | None = None,
        memory_mb: float | None = None,
    ) -> object: ...


class Executor:
    """The innermost call of the middleware chain."""

    def __init__(self, process_runner: ProcessRunner | None = None) -> None:
        self._process_runner = process_runner

    async def __call__(self, ctx: JobContext) -> Outcome:
        task = ctx.task
        try:
            payload = task.decode(ctx.job.payload)
        except PayloadError as exc:
            return Fail(JobError(f"invalid payload for {task.name}: {exc}", kind="invalid_payload"))
        try:
            value = await self._invoke(ctx, payload)
        except asyncio.CancelledError as exc:
            runner = asyncio.current_task()
            if runner is None or runner.cancelling():
                raise  # this attempt was cancelled (stop, lost lease, time limit)
            # The handler's own CancelledError (it awaited something another task cancelled):
            # a failed attempt like any other, not a cancel of the slot.
            return Errored(error_of(exc))
        except PermanentError as exc:
            return Fail(error_of(exc, "permanent"))
        except RetryableError as exc:
            if exc.after is not None:
                return Retry(after=exc.after, reason=str(exc), error=error_of(exc))
            return Errored(error_of(exc))
        except Exception as exc:
            retryable = getattr(exc, "retryable", True) is not False
            return Errored(error_of(exc), retryable=retryable)
        return as_outcome(value)

    def _invoke(self, ctx: JobContext, payload: object) -> Awaitable[object]:
        task = ctx.task
        if task.executor is ExecutorKind.ASYNC:
            return task.handler(ctx, payload)  # type: ignore[call-arg, return-value]
        if self._process_runner is None:
            raise PermanentError(
                f"task {task.name} needs the process pool, but this worker has none configured"
            )
        memory = ctx.job.memory_mb or task.memory_mb or None
        return self._process_runner.run(
            task.handler, payload, timeout=max(0.001, ctx.deadline - time.time()), memory_mb=memory
        )


def as_outcome(value: object) -> Outcome:
    """A handler's return value as an outcome: outcomes pass through, JSON values are success."""
    if isinstance(value, OUTCOME_TYPES):
        return value
    try:
        return Success(ensure_json(value, "handler result"))
    except TypeError as exc:
        return Fail(JobError(str(exc), kind="invalid_result"))


def error_of(exc: BaseException, kind: str | None = None) -> JobError:
    """A JobError with the exception's message and traceback; an exception raised in a child
    process carries the child's traceback itself or on its ``__cause__``."""
    remote = getattr(exc, "remote_traceback", None) or getattr(
        exc.__cause__, "remote_traceback", None
    )
    text = remote if isinstance(remote, str) else "".join(traceback.format_exception(exc))
    message = f"{type(exc).__name__}: {exc}"
    return JobError(message=message, kind=kind or type(exc).__name__, traceback=text)
