"""The writer gate: processes sharing one SQLite file take turns to write through a kernel lock.

SQLite makes a writer that finds the file locked sleep and retry (1, 2, 5, 10 ... 100 ms), so
under contention between processes the losers sleep while the winners keep the lock: throughput
holds but one process can starve for a while and tail latency grows. Before ``BEGIN IMMEDIATE``
each queue's database thread therefore takes an exclusive ``flock`` on ``<database>-gate``; the
kernel wakes a blocked taker the moment the holder lets go, with no sleeping or polling.

The lock belongs to an open file, so it vanishes when its process dies: nothing stale can block
a restart. Only our own commit groups take it; the reaper's and migrations' transactions, and
any other program, rely on SQLite's own locking (``busy_timeout``) as before. Where ``flock``
is unavailable (not POSIX) or the file cannot be created, the gate is skipped.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from types import TracebackType

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]

log = logging.getLogger("gaia.queue.sqlite")


def gate_path(database: Path) -> Path:
    return database.with_name(database.name + "-gate")


class WriterGate:
    """Used only by the database thread that owns it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None
        self._usable = fcntl is not None

    def __enter__(self) -> WriterGate:
        if self._fd is None and self._usable:
            try:
                self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError as exc:
                log.warning("sqlite queue: no writer gate at %s (%s)", self.path, exc)
                self._usable = False
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_EX)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd is not None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self._fd = None
