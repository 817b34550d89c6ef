"""``redis://host:port/db?queue=NAME``: the queue on Redis (needs the ``[redis]`` extra and a
server of Redis 7.0 or later).

Every lifecycle step (enqueue, claim, heartbeat, complete, retry, fail, release, cancel,
requeue, reap) is one function of a Lua library loaded with FUNCTION LOAD (:mod:`.scripts`),
so it is atomic on the server; the library is also kept in the AOF, and reloaded if a server
lost it. Due jobs wait in a sorted set per job type, delayed and retry-scheduled ones in
another, scored by due time, which the claim function promotes. Waiting claimers block in
BLPOP on wake-up lists that enqueue, retry, release, requeue and reap push to. The calls made in
one event-loop turn go out as one write on the queue's own pipelined connection (:mod:`.wire`),
and calls of the same step share one function call (ten slots completing at once cost the
server one call); ``claim_many`` claims several jobs at once (:mod:`.pipelining`). Key layout
and stored format: :mod:`.keys` and :mod:`.records` (a queue whose keys hold another format is
refused with a clear error, not migrated); options: :mod:`.options`. Times come from the
client's clock: keep machines NTP-synced (skew well below the lease length). Finished jobs are
deleted by the reaper once their retention is over (``reap``; a worker pool runs it).

Where the time goes, and why the code is shaped as it is: on the server, a ``redis.call`` costs
about 10,000 instructions whatever it does, and every argument, reply value, string made and
pattern matched adds to it; so a step reads and writes a line or two of text per job (not a
dozen hash fields), gathers its sorted-set writes into one variadic command per key, and
complete rebuilds its line with plain searches. On the client, the claim and complete replies
carry only what the client does not know, and jobs are decoded in one pass.

On connection loss every call reconnects with backoff (up to ``retry_for`` seconds) and is sent
again, marked as a re-send, so a step whose reply was lost is not applied twice. One case costs
time, not work: a claim whose reply is lost leaves its job running under a lease nobody holds,
until the reaper reclaims it (counted as an attempt: a job allowed one attempt is then
dead-lettered as "lease expired", and can be requeued). Making claims idempotent across a lost
reply would cost a write per claim on the hot path, for a case that needs the connection to
break in the instant between the claim and its reply.

Durability is the server's AOF setting (each function call's writes enter the AOF as one
MULTI/EXEC, so a restart never replays half a step):

- ``appendonly yes`` + ``appendfsync always``: fsynced before the reply; an acknowledged enqueue
  and every acknowledged state change survive a server crash, an OS crash and a power loss.
- ``appendonly yes`` + ``appendfsync everysec``: written to the AOF before the reply, fsynced
  each second; survives a crash or restart of redis-server; an OS crash or power loss can lose
  about the last 1-2 s of acknowledged enqueues and state changes.
- ``appendfsync no``: as everysec for a server crash; the OS flushes when it likes (often
  ~30 s), so a power loss can lose more. Without ``appendonly`` (RDB snapshots only, or none) a
  restart loses everything since the last snapshot: not fit for a durable queue.

Recommended: ``appendonly yes`` + ``appendfsync everysec`` (a lost state change only re-runs a
job after its lease expires; a lost enqueue needs an OS crash within a second); use ``always``
where an acknowledged enqueue must survive a power loss. Opening a queue on a server without
``appendonly`` logs a warning.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from gaia.validator.queues.redis.connection import RedisLink
from gaia.validator.queues.redis.options import display_url, parse_redis_url
from gaia.validator.queues.redis.queue import RedisQueue

log = logging.getLogger(__name__)

__all__ = ["RedisQueue", "open_redis_queue"]


async def open_redis_queue(url: str, *, clock: Callable[[], float] = time.time) -> RedisQueue:
    """Connect to the server in ``url`` (waiting up to ``retry_for`` s for it to answer)."""
    options = parse_redis_url(url)
    shown = display_url(url)
    link = RedisLink(options, shown, clock)
    try:
        await link.command("PING")
        await link.reconnecting(lambda resent: link.load_functions())
        await _warn_unless_appendonly(link, shown)
    except BaseException:
        await link.close()
        raise
    return RedisQueue(link, options, clock=clock, url=shown)


async def _warn_unless_appendonly(link: RedisLink, shown: str) -> None:
    try:
        reply = await link.command("CONFIG", "GET", "appendonly")
    except Exception:  # CONFIG is often disabled on managed servers: nothing to check then
        return
    if isinstance(reply, dict) and reply.get(b"appendonly") == b"no":
        log.warning(
            "redis queue %s: the server runs without appendonly; a restart loses queued jobs",
            shown,
        )
