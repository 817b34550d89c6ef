"""Policies wrapped around job execution, one per module: retries, time limits, logging, metrics.

A middleware is an async callable ``(ctx, call_next) -> Outcome``; the pool composes them
outermost-first around the executor, so each policy is small and testable alone.
"""

from gaia.validator.workers.middleware.base import Call, Middleware, compose
from gaia.validator.workers.middleware.logging import LoggingMiddleware
from gaia.validator.workers.middleware.retries import Retries
from gaia.validator.workers.middleware.time_limit import TimeLimit


def default_middleware() -> list[Middleware]:
    """Logging outermost (sees the final outcome), then retries, then the time limit."""
    return [LoggingMiddleware(), Retries(), TimeLimit()]


__all__ = [
    "Call",
    "LoggingMiddleware",
    "Middleware",
    "Retries",
    "TimeLimit",
    "compose",
    "default_middleware",
]
