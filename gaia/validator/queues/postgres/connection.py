"""The connection pool, and retrying an operation with backoff when the server goes away.

An operation is a coroutine function ``(connection, attempt) -> T`` that runs ONE unit of work
(one statement, or one transaction). When the connection is lost, or the server is restarting, the
pool drops its connections and the operation runs again on a fresh one after a backoff (50 ms
doubling to 2 s, with jitter), until ``reconnect_timeout`` has passed; then
:class:`DatabaseUnavailable` is raised. ``attempt`` (1, 2, ...) lets an operation recognise that
an earlier attempt may have committed before its acknowledgement was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from gaia.validator.core.errors import GaiaError, QueueClosed
from gaia.validator.queues.postgres.options import ParsedURL
from gaia.validator.queues.postgres.rows import decode_json, encode_json

T = TypeVar("T")
Operation = Callable[[asyncpg.Connection, int], Awaitable[T]]

CONNECTION_LOST: tuple[type[BaseException], ...] = (
    OSError,  # refused, reset, timed out
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08, and "connection does not exist"
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,  # the server is starting up or shutting down
    asyncpg.ConnectionFailureError,
)

SESSION_SETTINGS = {
    "enable_bitmapscan": "off",
    "enable_hashjoin": "off",
    "enable_mergejoin": "off",
    "plan_cache_mode": "force_generic_plan",
}
"""Planner settings for the queue's pooled sessions, which run only the queue's statements; each
statement has a plain index path (the claim order, the primary key, a partial index), and these
settings keep the planner on it whatever the statistics say:

- right after a burst of enqueues, before autovacuum has analysed the table, the planner
  underestimates the claimable rows and would read them all through a bitmap scan and sort them
  instead of walking the claim-order index and stopping after LIMIT rows (25 ms instead of
  0.5 ms per claim at 5,000 queued jobs);
- asyncpg prepares every statement, and after five runs PostgreSQL may switch to a generic plan,
  which cannot see a batch's LIMIT: it then joined the claimed ids back to the table with a hash
  join over a full scan (170 ms instead of 0.2 ms per batch claim at 200,000 queued jobs);
- ``plan_cache_mode = force_generic_plan``: each statement is planned once per connection. Left
  to choose, PostgreSQL kept re-planning the claim and completion for every batch in some runs
  (a fifth of the server's CPU), depending on the statistics when it decided. Every statement's
  generic plan is checked by tests/queues/test_postgres_plans.py.
"""

FIRST_BACKOFF = 0.05
MAX_BACKOFF = 2.0
CLOSE_TIMEOUT = 5.0


class DatabaseUnavailable(GaiaError, ConnectionError):
    """PostgreSQL could not be reached again within the queue's ``reconnect_timeout``."""


def is_connection_lost(error: BaseException) -> bool:
    if isinstance(error, CONNECTION_LOST):
        return True
    if isinstance(error, asyncpg.exceptions.InternalClientError):
        # A session the server dropped mid-exchange can be left in a protocol state that
        # refuses the next query ("another operation is in progress"): replace it.
        return True
    # asyncpg raises a bare InterfaceError when a query meets a connection it already closed,
    # or a held pool connection it released back to the pool when its socket closed.
    return isinstance(error, asyncpg.InterfaceError) and (
        "closed" in str(error) or "released back to the pool" in str(error)
    )


def backoff(attempt: int) -> float:
    """Seconds to wait before attempt ``attempt + 1``: exponential with +-20 % jitter."""
    base = min(MAX_BACKOFF, FIRST_BACKOFF * 2.0 ** max(0, attempt - 1))
    return base * random.uniform(0.8, 1.2)


async def prepare_connection(connection: asyncpg.Connection) -> None:
    """Every connection decodes JSONB to Python values and encodes them as compact JSON."""
    await connection.set_type_codec(
        "jsonb", encoder=encode_json, decoder=decode_json, schema="pg_catalog"
    )


async def _keep_session(connection: asyncpg.Connection) -> None:
    """Pool reset hook: nothing to reset (the queue never changes session state), saving the
    round trip asyncpg would otherwise spend on every release."""


async def _nothing() -> None:
    return None


class Connector:
    """Owns the pool; hands out dedicated connections (migrations, LISTEN) too."""

    def __init__(self, parsed: ParsedURL) -> None:
        self._dsn = parsed.dsn
        self._display = parsed.display
        self._options = parsed.options
        self._pool: asyncpg.Pool | None = None
        self._closing = False
        self._held: set[asyncpg.Connection] = set()
        self._letting_go: set[asyncio.Task[None]] = set()

    async def open(self) -> None:
        async def create(_: object, attempt: int) -> asyncpg.Pool:
            return await asyncpg.create_pool(
                self._dsn,
                min_size=0,  # no background refill racing a restarting server
                max_size=self._options.pool_size,
                max_inactive_connection_lifetime=0,  # keep opened connections warm
                init=prepare_connection,
                reset=_keep_session,
                timeout=self._options.connect_timeout,
                server_settings=self._session_settings(),
            )

        self._pool = await self._retry(create, _nothing)

    def _session_settings(self) -> dict[str, str]:
        settings = dict(SESSION_SETTINGS)
        if self._options.synchronous_commit is not None:
            settings["synchronous_commit"] = self._options.synchronous_commit
        return settings

    async def run(self, operation: Operation[T]) -> T:
        """Run ``operation`` on a pooled connection, reconnecting with backoff if it is lost."""
        pool = self._pool
        if pool is None or self._closing:
            raise QueueClosed(f"the connection pool to {self._display} is closed")

        async def on_pool(_: object, attempt: int) -> T:
            if self._closing:  # closed while this operation waited to retry
                raise QueueClosed(f"the connection pool to {self._display} was closed")
            async with pool.acquire() as connection:
                try:
                    return await operation(connection, attempt)
                except Exception as error:
                    if is_connection_lost(error):
                        # Never hand a half-dead session out again (asyncpg may already have
                        # released a connection it saw close).
                        with contextlib.suppress(asyncpg.InterfaceError):
                            connection.terminate()
                    raise

        return await self._retry(on_pool, pool.expire_connections)

    # -- connections held by lanes -------------------------------------------------------------
    def may_hold(self) -> bool:
        """Whether a lane may keep a connection: lanes hold at most half the pool."""
        return not self._closing and len(self._held) < max(1, self._options.pool_size // 2)

    async def hold(self) -> asyncpg.Connection:
        pool = self._pool
        if pool is None or self._closing:
            raise QueueClosed(f"the connection pool to {self._display} is closed")
        connection = await pool.acquire()
        self._held.add(connection)
        return connection

    async def unhold(self, connection: asyncpg.Connection, *, broken: bool = False) -> None:
        """Give a held connection back (once: a lane letting go and a close may both try)."""
        if connection not in self._held:
            return
        self._held.discard(connection)
        if broken:
            with contextlib.suppress(asyncpg.InterfaceError):
                connection.terminate()
        pool = self._pool
        if pool is not None:
            with contextlib.suppress(asyncpg.InterfaceError):  # already released on close
                await pool.release(connection)

    def unhold_soon(self, connection: asyncpg.Connection) -> None:
        task = asyncio.get_running_loop().create_task(self.unhold(connection))
        self._letting_go.add(task)
        task.add_done_callback(self._letting_go.discard)

    async def retrying(self, operation: Callable[[object, int], Awaitable[T]]) -> T:
        """Run ``operation(None, attempt)`` with the reconnect policy of :meth:`run`."""
        pool = self._pool
        if pool is None or self._closing:
            raise QueueClosed(f"the connection pool to {self._display} is closed")
        return await self._retry(operation, pool.expire_connections)

    async def connect(self) -> asyncpg.Connection:
        """A new connection outside the pool (the caller closes it); one attempt, no retry."""
        connection = await asyncpg.connect(self._dsn, timeout=self._options.connect_timeout)
        await prepare_connection(connection)
        return connection

    async def connect_with_retry(self) -> asyncpg.Connection:
        async def attempt_connect(_: object, attempt: int) -> asyncpg.Connection:
            return await self.connect()

        return await self._retry(attempt_connect, _nothing)

    async def _retry(
        self,
        operation: Callable[[object, int], Awaitable[T]],
        on_loss: Callable[[], Awaitable[None]],
    ) -> T:
        deadline = time.monotonic() + self._options.reconnect_timeout
        attempt = 0
        while True:
            attempt += 1
            try:
                return await operation(None, attempt)
            except Exception as error:
                if not is_connection_lost(error):
                    raise
                await on_loss()
                delay = 0.0 if attempt == 1 else backoff(attempt - 1)
                if time.monotonic() + delay > deadline:
                    raise DatabaseUnavailable(
                        f"PostgreSQL at {self._display} unreachable for "
                        f"{self._options.reconnect_timeout:g} s "
                        f"(reconnect_timeout); last error: {error!r}"
                    ) from error
                await asyncio.sleep(delay)

    async def close(self) -> None:
        self._closing = True
        for connection in list(self._held):
            await self.unhold(connection)
        if self._letting_go:
            await asyncio.gather(*self._letting_go, return_exceptions=True)
        pool, self._pool = self._pool, None
        if pool is None:
            return
        try:
            await asyncio.wait_for(pool.close(), CLOSE_TIMEOUT)
        except CONNECTION_LOST:  # includes TimeoutError
            pool.terminate()


LANE_IDLE_SECONDS = 1.0


class Lane:
    """A pooled connection kept by one stream of batches (the claims of one set of job types,
    or the completions) while it is busy, so that back-to-back batches skip the pool's acquire
    and release (about 40 us of client CPU each, a quarter of the per-batch cost).

    Batches on a lane never overlap (the Coalescer sends one at a time). The connection goes back
    to the pool after LANE_IDLE_SECONDS without use, at once when it breaks, and on close. Lanes
    hold at most half the pool; a lane that cannot hold one borrows a connection per batch.
    """

    def __init__(self, connector: Connector) -> None:
        self._connector = connector
        self._connection: asyncpg.Connection | None = None
        self._idle: asyncio.TimerHandle | None = None

    async def run(self, operation: Operation[T]) -> T:
        if self._idle is not None:
            self._idle.cancel()
            self._idle = None
        connector = self._connector
        if self._connection is None and not connector.may_hold():
            return await connector.run(operation)

        async def attempt(_: object, number: int) -> T:
            connection = self._connection
            if connection is None:
                connection = self._connection = await connector.hold()
            try:
                return await operation(connection, number)
            except Exception as error:
                if is_connection_lost(error):
                    self._connection = None
                    await connector.unhold(connection, broken=True)
                raise

        try:
            return await connector.retrying(attempt)
        finally:
            if self._connection is not None:
                loop = asyncio.get_running_loop()
                self._idle = loop.call_later(LANE_IDLE_SECONDS, self._let_go)

    def _let_go(self) -> None:
        connection, self._connection = self._connection, None
        self._idle = None
        if connection is not None:
            self._connector.unhold_soon(connection)
