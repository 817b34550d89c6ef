"""Queue backends behind one contract, chosen by URL.

=====================  ===========================================================
``memory://``          in-process, for tests and demos (:mod:`.memory`)
``sqlite:///path``     embedded default for one machine (:mod:`.sqlite`)
``postgresql://...``   durable, many machines (:mod:`.postgres`), needs ``[postgres]``
``redis://...``        durable per the server's AOF setting (:mod:`.redis`), needs ``[redis]``
``rediss://...``       the same over TLS (:mod:`.redis.tls`)
=====================  ===========================================================

Backends are imported only when their scheme is opened, so the core stays dependency-free.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from urllib.parse import urlsplit

from gaia.validator.core.queue import Queue

_BACKENDS: dict[str, tuple[str, str]] = {
    "memory": ("gaia.validator.queues.memory", "open_memory_queue"),
    "sqlite": ("gaia.validator.queues.sqlite", "open_sqlite_queue"),
    "postgresql": ("gaia.validator.queues.postgres", "open_postgres_queue"),
    "postgres": ("gaia.validator.queues.postgres", "open_postgres_queue"),
    "redis": ("gaia.validator.queues.redis", "open_redis_queue"),
    "rediss": ("gaia.validator.queues.redis", "open_redis_queue"),
}


async def open_queue(url: str, *, clock: Callable[[], float] = time.time) -> Queue:
    """Open (and for durable backends, migrate and connect) the queue at ``url``.

    ``clock`` gives the time every lease, delay and retry is measured in; across machines keep
    clocks NTP-synchronised (skew well below the lease length).
    """
    scheme = urlsplit(url).scheme
    try:
        module_name, opener_name = _BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{name}://" for name in sorted(_BACKENDS))
        raise ValueError(
            f"unknown queue URL scheme {scheme!r} in {url!r}; use one of {known}"
        ) from None
    module = importlib.import_module(module_name)
    opener: Callable[..., object] = getattr(module, opener_name)
    queue = await opener(url, clock=clock)  # type: ignore[misc]
    assert isinstance(queue, Queue)
    return queue
