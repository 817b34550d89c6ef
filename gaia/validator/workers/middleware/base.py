"""The middleware interface and its composition."""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Sequence
from functools import partial

from gaia.validator.core.outcomes import Outcome, TaskResult
from gaia.validator.workers.context import JobContext

Call = Callable[[JobContext], Coroutine[object, object, Outcome]]


class Middleware:
    """Base class: override ``__call__`` to wrap execution and ``settled`` to observe results."""

    async def __call__(self, ctx: JobContext, call_next: Call) -> Outcome:
        return await call_next(ctx)

    def settled(self, result: TaskResult) -> None:
        """Called once an attempt's outcome was written to the queue."""

    def reaped(self, count: int) -> None:
        """Called when this pool's reaper reclaimed ``count`` expired leases."""

    async def start(self) -> None:
        """Called when the worker pool starts."""

    async def stop(self) -> None:
        """Called when the worker pool has stopped."""


def compose(middleware: Sequence[Middleware], inner: Call) -> Call:
    """``[a, b, c]`` around ``inner`` gives ``a(b(c(inner)))``."""
    call = inner
    for layer in reversed(middleware):
        call = partial(_wrapped, layer, call)
    return call


async def _wrapped(layer: Middleware, call_next: Call, ctx: JobContext) -> Outcome:
    return await layer(ctx, call_next)
