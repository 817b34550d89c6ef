"""The queue's database thread: one ``sqlite3`` connection, used only by one dedicated thread.

Why the standard library's ``sqlite3`` on a thread of our own rather than ``aiosqlite``: the
embedded default stays free of dependencies, and owning the thread allows *group commit*: the
thread takes every state change waiting for it (say the claims and completions of ten worker
slots) and runs them in ONE ``BEGIN IMMEDIATE`` transaction, each inside its own savepoint, so
ten changes cost one thread hop and one commit (one fsync with ``synchronous=full``) instead of
ten. An operation that raises (LeaseLost, a duplicate id) is rolled back to its savepoint alone.
Results are handed back only after the COMMIT succeeded, so nobody acts on a change that was
not stored. Reads run outside write transactions (WAL readers never wait for writers).

Transient failures (another process holding the write lock past ``busy_timeout``, I/O errors,
a file that cannot be opened for a moment) are retried with exponential backoff for up to
``retry_for`` seconds, on a fresh connection except for plain lock contention. A batch is one
transaction and nothing was handed back yet, so running it again is safe.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import Generic, TypeVar

from gaia.validator.core.errors import QueueClosed
from gaia.validator.queues.sqlite.gate import WriterGate, gate_path
from gaia.validator.queues.sqlite.options import SqliteOptions
from gaia.validator.queues.sqlite.schema import migrate

log = logging.getLogger("gaia.queue.sqlite")

T = TypeVar("T")

_BUSY = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
_RECONNECT = frozenset({sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL})
_FIRST_BACKOFF = 0.01
_MAX_BACKOFF = 1.0
WAL_SIZE_LIMIT = 64 * 1024 * 1024
MAX_GROUP = 64
"""Most state changes committed together."""


def _primary_code(exc: sqlite3.Error) -> int:
    return int(getattr(exc, "sqlite_errorcode", -1)) & 0xFF


def is_transient(exc: BaseException) -> bool:
    code = _primary_code(exc) if isinstance(exc, sqlite3.OperationalError) else -1
    return code in _BUSY or code in _RECONNECT


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
        mode = _switch_to_wal(connection, options.busy_timeout)
        if str(mode).lower() != "wal":
            raise sqlite3.OperationalError(
                f"{options.path}: could not switch to WAL journal mode (got {mode!r}); "
                "is the file on a network file system?"
            )
        connection.execute(f"PRAGMA synchronous = {options.synchronous.upper()}")
        # After a burst, checkpoints cut the write-ahead log back to this size (64 MiB).
        connection.execute(f"PRAGMA journal_size_limit = {WAL_SIZE_LIMIT:d}")
        migrate(connection, str(options.path))
    except BaseException:
        connection.close()
        raise
    return connection


def _switch_to_wal(connection: sqlite3.Connection, patience: float) -> object:
    """``PRAGMA journal_mode = WAL``, retried while another connection holds the lock it needs.

    The switch takes an exclusive lock, and SQLite may answer BUSY at once instead of calling the
    busy handler, e.g. when several processes open a new file together; each retry is cheap and
    the first connection to get through leaves the file in WAL mode for the others."""
    deadline = time.monotonic() + patience
    pause = 0.005
    while True:
        try:
            return connection.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        except sqlite3.OperationalError as exc:
            if _primary_code(exc) not in _BUSY or time.monotonic() + pause > deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


class Kind(Enum):
    CHANGE = "change"
    """One transaction's worth of writes; grouped with other changes into one commit."""
    READ = "read"
    """Reads only, outside any write transaction."""
    OWN = "own"
    """Manages its own transactions (the reaper's chunked loop)."""


@dataclass
class _Work(Generic[T]):
    fn: Callable[[sqlite3.Connection], T]
    kind: Kind
    ring: bool
    retry_for: float
    future: asyncio.Future[T]
    abandoned: Callable[[T], object] | None
    """Called (on the loop) with the result if the caller stopped waiting before it came."""
    durable: bool = True
    """False: may be committed without fsync (see :meth:`Database.submit`)."""


_Outcome = tuple[bool, object]  # (succeeded, result or exception)


class Database:
    """Runs functions of a connection on the queue's single database thread.

    Results go back to the event loop in one callback per batch (not one per operation), so
    the callers resumed by a batch all submit their next operations before the database thread
    looks again: that is what fills the next group. ``ring`` is called on the database thread
    after every commit that included a change submitted with ``ring=True`` (the cross-process
    wake-up)."""

    def __init__(self, options: SqliteOptions, ring: Callable[[], object]) -> None:
        self.options = options
        self._ring = ring
        self._inbox: queue.SimpleQueue[_Work[object] | None] = queue.SimpleQueue()
        self._connection: sqlite3.Connection | None = None
        self._gate = WriterGate(gate_path(options.path))
        self._closed = False
        self._stopped = concurrent.futures.Future[None]()
        self._thread = threading.Thread(target=self._serve, name="gaia-sqlite", daemon=True)
        self._thread.start()

    async def open(self) -> None:
        """Connect and migrate now, failing fast on configuration errors (no retry loop)."""
        await self.submit(lambda _: None, Kind.READ, retry_for=0.0)

    def submit(
        self,
        fn: Callable[[sqlite3.Connection], T],
        kind: Kind,
        *,
        ring: bool = False,
        retry_for: float | None = None,
        abandoned: Callable[[T], object] | None = None,
        durable: bool = True,
    ) -> asyncio.Future[T]:
        """Queue ``fn(connection)`` on the database thread (call from the event loop).

        ``durable=False`` (claims, heartbeats): under ``synchronous=full`` a group made only of
        such changes is committed without an fsync. The write-ahead log is sequential, so the
        next fsync'd commit makes it durable too; only a power loss before that can undo it,
        and a power loss also kills every worker on this machine that held the claim: the job
        is simply queued again, as after a crash (minus the counted attempt)."""
        if self._closed:
            raise QueueClosed(f"sqlite queue {self.options.path} is closed")
        budget = self.options.retry_for if retry_for is None else retry_for
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        work = _Work(fn, kind, ring, budget, future, abandoned, durable)
        self._inbox.put(work)  # type: ignore[arg-type]
        return future

    async def run(
        self,
        fn: Callable[[sqlite3.Connection], T],
        kind: Kind,
        *,
        ring: bool = False,
        durable: bool = True,
    ) -> T:
        return await self.submit(fn, kind, ring=ring, durable=durable)

    async def close(self) -> None:
        """Finish the work already submitted, then close the connection and the thread."""
        if self._closed:
            return
        self._closed = True
        self._inbox.put(None)
        await asyncio.wrap_future(self._stopped)

    # -- the database thread ----------------------------------------------------------------
    def _serve(self) -> None:
        try:
            stopping = False
            while not stopping:
                first = self._inbox.get()
                if first is None:
                    break
                batch = [first]
                while len(batch) < MAX_GROUP:
                    try:
                        more = self._inbox.get_nowait()
                    except queue.Empty:
                        break
                    if more is None:
                        stopping = True
                        break
                    batch.append(more)
                # A caller that already gave up (cancelled) needs nothing done.
                live = [work for work in batch if not work.future.cancelled()]
                try:
                    self._run_batch(live)
                except Exception as exc:  # a bug here must fail the callers, not hang them
                    log.exception("sqlite queue %s: database thread error", self.options.path)
                    self._deliver([(work, False, exc) for work in live])
        finally:
            self._disconnect()
            self._gate.close()
            self._stopped.set_result(None)

    def _run_batch(self, batch: list[_Work[object]]) -> None:
        delivered: list[tuple[_Work[object], bool, object]] = []
        changes: list[_Work[object]] = []
        for work in batch:
            if work.kind is Kind.CHANGE:
                changes.append(work)
                continue
            if changes:
                delivered.extend(self._run_changes(changes))
                changes = []
            delivered.append(self._run_alone(work))
        if changes:
            delivered.extend(self._run_changes(changes))
        self._deliver(delivered)
        if any(work.ring and succeeded for work, succeeded, _ in delivered):
            try:
                self._ring()
            except Exception as exc:  # a wake-up is an optimisation: never fail a commit over it
                log.warning("sqlite queue %s: wake-up ring failed: %s", self.options.path, exc)

    def _run_alone(self, work: _Work[object]) -> tuple[_Work[object], bool, object]:
        try:
            return work, True, self._with_retry(work.retry_for, work.fn)
        except Exception as exc:
            return work, False, exc

    def _run_changes(
        self, changes: list[_Work[object]]
    ) -> list[tuple[_Work[object], bool, object]]:
        budget = min(work.retry_for for work in changes)
        relaxed = self.options.synchronous == "full" and not any(w.durable for w in changes)
        try:
            outcomes = self._with_retry(budget, lambda db: self._gated(db, changes, relaxed))
        except Exception as exc:
            return [(work, False, exc) for work in changes]
        return [(work, ok, value) for work, (ok, value) in zip(changes, outcomes, strict=True)]

    @staticmethod
    def _deliver(delivered: list[tuple[_Work[object], bool, object]]) -> None:
        """Hand results to their event loops: one thread-safe callback per loop and batch."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Work[object], bool, object]]] = {}
        for item in delivered:
            by_loop.setdefault(item[0].future.get_loop(), []).append(item)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # that loop is closed: nobody is waiting
                loop.call_soon_threadsafe(_resolve, items)

    def _gated(
        self, connection: sqlite3.Connection, changes: list[_Work[object]], relaxed: bool
    ) -> list[_Outcome]:
        with self._gate:
            return self._group(connection, changes, relaxed)

    @staticmethod
    def _group(
        connection: sqlite3.Connection, changes: list[_Work[object]], relaxed: bool
    ) -> list[_Outcome]:
        """All ``changes`` in one immediate transaction, each in a savepoint of its own (a lone
        change needs none: the transaction is its savepoint). ``relaxed``: commit without fsync
        (only changes submitted with ``durable=False``)."""
        if relaxed:
            connection.execute("PRAGMA synchronous = NORMAL")
            try:
                return Database._group(connection, changes, relaxed=False)
            finally:
                connection.execute("PRAGMA synchronous = FULL")
        alone = len(changes) == 1
        connection.execute("BEGIN IMMEDIATE")
        try:
            outcomes: list[_Outcome] = []
            for work in changes:
                if not alone:
                    connection.execute("SAVEPOINT change")
                try:
                    value = work.fn(connection)
                except Exception as exc:
                    if is_transient(exc):
                        raise  # the whole group is rolled back and retried
                    connection.execute("ROLLBACK" if alone else "ROLLBACK TO change")
                    if not alone:
                        connection.execute("RELEASE change")
                    outcomes.append((False, exc))
                else:
                    if not alone:
                        connection.execute("RELEASE change")
                    outcomes.append((True, value))
            if connection.in_transaction:
                connection.execute("COMMIT")
        except BaseException:
            if connection.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    connection.execute("ROLLBACK")
            raise
        return outcomes

    def _with_retry(self, retry_for: float, fn: Callable[[sqlite3.Connection], T]) -> T:
        deadline = time.monotonic() + retry_for
        backoff = _FIRST_BACKOFF
        while True:
            try:
                if self._connection is None:
                    self._connection = connect(self.options)
                return fn(self._connection)
            except sqlite3.OperationalError as exc:
                if not is_transient(exc) or time.monotonic() + backoff > deadline:
                    raise
                log.warning(
                    "sqlite queue %s: %s; retrying in %.2f s", self.options.path, exc, backoff
                )
                if _primary_code(exc) in _RECONNECT:
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


def _resolve(items: list[tuple[_Work[object], bool, object]]) -> None:
    """On the event loop: settle each caller's future (or hand back what it abandoned)."""
    for work, succeeded, value in items:
        if work.future.done():  # the caller was cancelled while the work ran
            if succeeded and work.abandoned is not None:
                try:
                    work.abandoned(value)
                except Exception:
                    log.exception("sqlite queue: handling an abandoned result failed")
        elif succeeded:
            work.future.set_result(value)
        else:
            assert isinstance(value, BaseException)
            work.future.set_exception(value)
