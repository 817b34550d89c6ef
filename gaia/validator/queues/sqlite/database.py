"""The queue's database thread: one ``sqlite3`` connection, used only by one dedicated thread.

Why the standard library's ``sqlite3`` on a thread of our own rather than ``aiosqlite``: the
embedded default stays free of dependencies, and owning the thread lets one hop run a whole
transaction (claim = seek + decode + lifecycle + update) plus the wake-up ring after it, with
retry and reconnect logic around it, instead of one thread hop per statement. Nothing touching
the database ever runs on the event loop.

Transient failures (another process holding the write lock past ``busy_timeout``, I/O errors,
a file that cannot be opened for a moment) are retried with exponential backoff for up to
``retry_for`` seconds, on a fresh connection except for plain lock contention. An operation is
one transaction, so a failed attempt left nothing behind and repeating it is safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import sqlite3
import time
from collections.abc import Callable
from typing import Concatenate, ParamSpec, TypeVar

from gaia.validator.core.errors import QueueClosed
from gaia.validator.queues.sqlite.options import SqliteOptions
from gaia.validator.queues.sqlite.schema import migrate

log = logging.getLogger("gaia.queue.sqlite")

P = ParamSpec("P")
T = TypeVar("T")

_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_RECONNECT = frozenset({sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL})
_FIRST_BACKOFF = 0.01
_MAX_BACKOFF = 1.0


def _primary_code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", -1)) & 0xFF


def connect(options: SqliteOptions) -> sqlite3.Connection:
    """Open, configure (WAL, synchronous, busy timeout) and migrate the database."""
    connection = sqlite3.connect(
        options.path,
        timeout=options.busy_timeout,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=128,
    )
    try:
        mode = connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(
                f"{options.path}: could not switch to WAL journal mode (got {mode!r}); "
                "is the file on a network file system?"
            )
        connection.execute(f"PRAGMA synchronous = {options.synchronous.upper()}")
        migrate(connection, str(options.path))
    except BaseException:
        connection.close()
        raise
    return connection


class Database:
    """Runs functions of a connection on the queue's single database thread."""

    def __init__(self, options: SqliteOptions) -> None:
        self.options = options
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="gaia-sqlite"
        )
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    async def open(self) -> None:
        """Connect and migrate now, failing fast on configuration errors (no retry loop)."""
        await self.run_with_retry(0.0, lambda connection: None)

    def submit(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> concurrent.futures.Future[T]:
        """Queue ``fn(connection, ...)`` on the database thread; the future holds its result."""
        if self._closed:
            raise QueueClosed(f"sqlite queue {self.options.path} is closed")
        try:
            return self._executor.submit(
                self._call, self.options.retry_for, lambda db: fn(db, *args, **kwargs)
            )
        except RuntimeError:  # executor shut down by a concurrent close
            raise QueueClosed(f"sqlite queue {self.options.path} is closed") from None

    async def run(
        self,
        fn: Callable[Concatenate[sqlite3.Connection, P], T],
        *args: P.args,
        **kwargs: P.kwargs,
    ) -> T:
        return await asyncio.wrap_future(self.submit(fn, *args, **kwargs))

    async def run_with_retry(self, retry_for: float, fn: Callable[[sqlite3.Connection], T]) -> T:
        if self._closed:
            raise QueueClosed(f"sqlite queue {self.options.path} is closed")
        return await asyncio.wrap_future(self._executor.submit(self._call, retry_for, fn))

    def _call(self, retry_for: float, fn: Callable[[sqlite3.Connection], T]) -> T:
        """On the database thread: run ``fn``, retrying transient errors until ``retry_for``."""
        deadline = time.monotonic() + retry_for
        backoff = _FIRST_BACKOFF
        while True:
            try:
                if self._connection is None:
                    self._connection = connect(self.options)
                return fn(self._connection)
            except sqlite3.OperationalError as exc:
                code = _primary_code(exc)
                if code not in _BUSY and code not in _RECONNECT:
                    raise
                if time.monotonic() + backoff > deadline:
                    raise
                log.warning(
                    "sqlite queue %s: %s; retrying in %.2f s", self.options.path, exc, backoff
                )
                if code in _RECONNECT:
                    self._disconnect()
                time.sleep(backoff)
                backoff = min(backoff * 2, _MAX_BACKOFF)

    def _disconnect(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            except sqlite3.Error as exc:
                log.warning("sqlite queue %s: error closing: %s", self.options.path, exc)
            self._connection = None

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await asyncio.wrap_future(self._executor.submit(self._disconnect))
        self._executor.shutdown(wait=False)
