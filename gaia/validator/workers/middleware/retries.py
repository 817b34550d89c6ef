"""Retry policy: an errored attempt becomes a delayed retry, or a dead-letter when none is left."""

from __future__ import annotations

import random

from gaia.validator.core.outcomes import Errored, Fail, Outcome, Retry
from gaia.validator.workers.context import JobContext
from gaia.validator.workers.middleware.base import Call, Middleware


class Retries(Middleware):
    """Applies each task's :class:`RetryPolicy` (backoff with full jitter, cap, max attempts)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    async def __call__(self, ctx: JobContext, call_next: Call) -> Outcome:
        outcome = await call_next(ctx)
        if not isinstance(outcome, Errored):
            return outcome
        job = ctx.job
        if not outcome.retryable or ctx.task.retry.exhausted(job.attempts, job.max_attempts):
            return Fail(outcome.error)
        delay = ctx.task.retry.delay(job.attempts, self._rng)
        return Retry(after=delay, reason=outcome.error.message, error=outcome.error)
