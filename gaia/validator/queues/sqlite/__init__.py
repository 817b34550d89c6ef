"""SQLite queue backend: ``sqlite:///relative/path.db`` or ``sqlite:////absolute/path.db``.

The embedded default for one machine; standard library only. See :mod:`.queue` for the design
and :mod:`.options` for the URL's query parameters.
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
