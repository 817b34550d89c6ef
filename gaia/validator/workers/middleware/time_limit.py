"""Time limit: every attempt runs under its job's timeout; expiry is a failed, retryable attempt."""

from __future__ import annotations

import asyncio
import time

from gaia.validator.core.job import JobError
from gaia.validator.core.outcomes import Errored, Outcome
from gaia.validator.workers.context import JobContext
from gaia.validator.workers.middleware.base import Call, Middleware


class TimeLimit(Middleware):
    async def __call__(self, ctx: JobContext, call_next: Call) -> Outcome:
        remaining = ctx.deadline - time.time()
        try:
            async with asyncio.timeout(max(0.0, remaining)):
                return await call_next(ctx)
        except TimeoutError:
            message = f"job {ctx.job.id} ({ctx.job.type}) timed out after {ctx.job.timeout:g} s"
            return Errored(JobError(message, kind="timeout"))
