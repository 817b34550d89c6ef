"""Cross-process wake-ups for one SQLite queue file: a directory of named pipes (FIFOs).

SQLite has no LISTEN/NOTIFY. Instead, every queue object that has a claimer waiting owns one
FIFO in ``<database>-wake/`` and watches it with the event loop (``add_reader``: no polling, no
thread). After committing work a claimer could take (enqueue, retry, release, requeue, reclaim),
a queue writes one byte to every other FIFO there; the owners wake and look at the database.

- A FIFO is created under a temporary name, opened at both ends, then renamed into place: a
  ringer never sees it without a reader. The owner holds its write end open too, so the read end
  never reports end-of-file (which would make the loop spin).
- Opening a FIFO that nobody reads fails with ENXIO: its owner died without cleaning up, so the
  ringer deletes it. A full pipe (EAGAIN) already holds a pending wake-up.
- Ringing costs a directory scan plus open/write/close per listening queue object, done on the
  database thread after the commit.

Missed bytes cannot lose a job: waiting claimers also re-check the database every
``idle_recheck`` seconds and at the next delayed job's due time. POSIX only; where FIFOs are
unavailable the queue runs on those re-checks alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import uuid
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("gaia.queue.sqlite")

SUFFIX = ".fifo"


def wake_directory(database: Path) -> Path:
    return database.with_name(database.name + "-wake")


class Doorbell:
    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._own: Path | None = None
        self._read_fd = -1
        self._write_fd = -1
        self._loop: asyncio.AbstractEventLoop | None = None

    @property
    def listening(self) -> bool:
        return self._own is not None

    def listen(self, loop: asyncio.AbstractEventLoop, on_ring: Callable[[], None]) -> bool:
        """Own a FIFO and call ``on_ring`` on the loop when rung; False if FIFOs are unusable."""
        if self._own is not None:
            return True
        if not hasattr(os, "mkfifo"):
            return False
        name = f"{os.getpid()}-{uuid.uuid4().hex[:16]}"
        staging = self.directory / f"{name}.new"
        final = self.directory / f"{name}{SUFFIX}"
        try:
            self.directory.mkdir(exist_ok=True)
            os.mkfifo(staging, 0o600)
            self._read_fd = os.open(staging, os.O_RDONLY | os.O_NONBLOCK)
            self._write_fd = os.open(staging, os.O_WRONLY | os.O_NONBLOCK)
            os.rename(staging, final)
        except OSError as exc:
            log.warning("sqlite queue: no cross-process wake-ups in %s: %s", self.directory, exc)
            self._close_fds()
            with contextlib.suppress(OSError):
                staging.unlink()
            return False

        def drain() -> None:
            with contextlib.suppress(BlockingIOError, InterruptedError):
                while os.read(self._read_fd, 4096):
                    pass
            on_ring()

        loop.add_reader(self._read_fd, drain)
        self._loop = loop
        self._own = final
        return True

    def ring(self) -> int:
        """Wake every other listener; returns how many were rung. Thread-safe, never raises."""
        rung = 0
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return 0  # no directory: nobody has ever listened
        for entry in entries:
            if not entry.name.endswith(SUFFIX) or entry.path == str(self._own):
                continue
            try:
                fd = os.open(entry.path, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno == errno.ENXIO:  # nobody reads it: its owner is gone
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                continue
            try:
                os.write(fd, b"\x01")
                rung += 1
            except BlockingIOError:
                rung += 1  # full: a wake-up is already pending there
            except OSError:
                pass
            finally:
                os.close(fd)
        return rung

    def close(self) -> None:
        if self._loop is not None and self._read_fd >= 0 and not self._loop.is_closed():
            self._loop.remove_reader(self._read_fd)
        self._loop = None
        if self._own is not None:
            with contextlib.suppress(OSError):
                self._own.unlink()
            self._own = None
        self._close_fds()

    def _close_fds(self) -> None:
        for fd in (self._read_fd, self._write_fd):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._read_fd = self._write_fd = -1
