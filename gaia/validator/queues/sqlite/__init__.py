"""SQLite queue backend: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

The embedded default for one machine; standard library only. See :mod:`.queue` for the design
and :mod:`.options` for the URL's query parameters.

Files beside ``queue.db``: SQLite's ``queue.db-wal`` and ``queue.db-shm``; ``queue.db-gate``
(the writer gate, :mod:`.gate`) and ``queue.db-wake/`` (one FIFO per waiting queue object,
:mod:`.doorbell`). The file must be on a local disk (WAL needs shared memory between the
processes), and every process sharing it uses the host's clock. Back up with SQLite's online
backup (``sqlite3 queue.db ".backup copy.db"``), not by copying files under a running worker.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from gaia.validator.queues.sqlite.options import SqliteOptions, parse_sqlite_url
from gaia.validator.queues.sqlite.queue import SqliteQueue

__all__ = ["SqliteOptions", "SqliteQueue", "open_sqlite_queue", "parse_sqlite_url"]


async def open_sqlite_queue(url: str, *, clock: Callable[[], float] = time.time) -> SqliteQueue:
    """Open the queue file at ``url``, creating it and applying pending schema migrations.

    The file's directory must exist. Raises ValueError for a malformed URL or option."""
    options = parse_sqlite_url(url)
    directory = options.path.parent
    if not directory.is_dir():
        raise ValueError(f"sqlite URL {url!r}: directory {str(directory)!r} does not exist")
    queue = SqliteQueue(options, clock=clock, url=url)
    try:
        await queue.open()
    except BaseException:
        await queue.close()
        raise
    return queue
