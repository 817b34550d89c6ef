"""LISTEN/NOTIFY wake-ups on one dedicated connection, reconnected with backoff when lost.

The jobs table's triggers NOTIFY ``<schema>.claimable`` whenever rows become claimable (enqueue,
retry, release, reap, requeue) from any process. The listener turns each notification into a
:class:`Signal` that wakes every claimer of this queue waiting in this process. A claimer notes the
signal's epoch BEFORE it looks for a job, and waits only if the epoch is unchanged, so a
notification that lands between "nothing to claim" and "wait" is never lost.

While the connection is down, :attr:`Listener.connected` is False and claimers cap their waits
(polling slowly) until it is back; on every (re)connect the signal fires, since notifications sent
meanwhile were missed. A keepalive query every ``KEEPALIVE_SECONDS`` detects a silently dead
connection. Idle, the listener costs one tiny query per keepalive period: ~0 CPU.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

import asyncpg

from gaia.validator.queues.postgres.connection import backoff, is_connection_lost

log = logging.getLogger(__name__)

KEEPALIVE_SECONDS = 30.0
KEEPALIVE_TIMEOUT = 10.0


class Signal:
    """Wakes all waiters at once; ``epoch`` counts the times it fired."""

    def __init__(self) -> None:
        self.epoch = 0
        self._waiters: set[asyncio.Future[None]] = set()

    def fire(self) -> None:
        self.epoch += 1
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    async def wait(self, since: int, timeout: float) -> None:
        """Return at once if the signal fired after epoch ``since``, else on the next fire or
        after ``timeout`` seconds."""
        if self.epoch != since or timeout <= 0:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.add(waiter)
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(waiter), timeout)
        finally:
            self._waiters.discard(waiter)
            if not waiter.done():
                waiter.cancel()


class Listener:
    """LISTENs on ``channel`` over connections made by ``connect``; started on first use."""

    def __init__(self, connect: Callable[[], Awaitable[asyncpg.Connection]], channel: str) -> None:
        self._connect = connect
        self._channel = channel
        self.signal = Signal()
        self.connected = False
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def start(self) -> None:
        """Start listening in the background (once). Until the connection is up, ``connected``
        is False; the signal fires when it comes up, so nothing sent after that is missed."""
        if self._task is None and not self._closed:
            self._task = asyncio.create_task(self._run(), name=f"listen {self._channel}")

    async def _run(self) -> None:
        failures = 0
        while not self._closed:
            try:
                await self._listen_until_lost()
                failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as error:
                if not is_connection_lost(error):
                    log.exception("listener on %s failed; reconnecting", self._channel)
                failures += 1
                await asyncio.sleep(backoff(failures))

    async def _listen_until_lost(self) -> None:
        connection = await self._connect()
        lost = asyncio.Event()
        try:
            connection.add_termination_listener(lambda _: lost.set())
            await connection.add_listener(self._channel, self._on_notification)
            self.connected = True
            self.signal.fire()  # anything sent while we were away was missed: look again
            while not lost.is_set() and not self._closed:
                try:
                    await asyncio.wait_for(lost.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    await connection.execute("SELECT 1", timeout=KEEPALIVE_TIMEOUT)
        finally:
            self.connected = False
            connection.terminate()
            self.signal.fire()  # waiters switch to polling until we are back

    def _on_notification(
        self, connection: object, pid: int, channel: str, payload: object
    ) -> None:
        self.signal.fire()

    async def close(self) -> None:
        self._closed = True
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self.signal.fire()
