"""A wake-up signal for claimers waiting in one event loop, safe against lost wake-ups.

A claimer reads :attr:`WakeSignal.generation` *before* it looks for a job, and passes it to
:meth:`WakeSignal.wait`: if anything was signalled while it was looking (the look is an ``await``
on the database thread, so the loop runs other callbacks meanwhile), the wait returns at once.
"""

from __future__ import annotations

import asyncio
import contextlib


class WakeSignal:
    def __init__(self) -> None:
        self._generation = 0
        self._waiters: set[asyncio.Future[None]] = set()

    @property
    def generation(self) -> int:
        return self._generation

    def notify(self) -> None:
        """Wake every waiter (call from the event loop's thread)."""
        self._generation += 1
        for future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters.clear()

    async def wait(self, seen: int, timeout: float) -> None:
        """Return after ``timeout`` seconds, or as soon as a notify newer than ``seen`` comes."""
        if self._generation != seen or timeout <= 0:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(future, timeout)
        finally:
            self._waiters.discard(future)
