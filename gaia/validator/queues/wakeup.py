"""Wake-ups for waiting claimers inside one event loop: no polling while idle."""

from __future__ import annotations

import asyncio
import contextlib


class Wakeup:
    """Waiters park on a future each; ``notify`` wakes all of them at once."""

    def __init__(self) -> None:
        self._waiters: set[asyncio.Future[None]] = set()

    async def wait(self, timeout: float) -> None:
        """Return when notified or after ``timeout`` seconds, whichever is first."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(future)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(future), timeout)
        finally:
            self._waiters.discard(future)
            if not future.done():
                future.cancel()

    def notify(self) -> None:
        for future in self._waiters:
            if not future.done():
                future.set_result(None)
        self._waiters.clear()
