"""Structured logs of every attempt: start and outcome, with job id, type, attempt, correlation."""

from __future__ import annotations

import logging
import time

from gaia.validator.core.outcomes import Errored, Fail, NotReady, Outcome, Retry, Success
from gaia.validator.workers.context import JobContext
from gaia.validator.workers.middleware.base import Call, Middleware

log = logging.getLogger("gaia.worker")


class LoggingMiddleware(Middleware):
    async def __call__(self, ctx: JobContext, call_next: Call) -> Outcome:
        fields = ctx.fields()
        log.debug("job started", extra=fields)
        started = time.perf_counter()
        outcome = await call_next(ctx)
        duration = round(time.perf_counter() - started, 6)
        name, level, error = describe(outcome)
        log.log(
            level,
            "job %s",
            name,
            extra={**fields, "outcome": name, "duration": duration, "error": error},
        )
        return outcome


def describe(outcome: Outcome) -> tuple[str, int, str | None]:
    """(outcome name, log level, error message) for a log line."""
    match outcome:
        case Success():
            return "succeeded", logging.INFO, None
        case Retry(reason=reason):
            return "retry", logging.WARNING, reason
        case NotReady(reason=reason):
            return "not_ready", logging.INFO, reason or None
        case Fail(error=error):
            return "dead", logging.ERROR, error.message
        case Errored(error=error):
            return "errored", logging.ERROR, error.message
    raise TypeError(f"not an outcome: {outcome!r}")
