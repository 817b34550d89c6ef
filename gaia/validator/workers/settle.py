"""Write an attempt's outcome onto the queue: the only place outcomes become queue calls."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection
from typing import TypeVar

from gaia.validator.core.errors import LeaseLost, QueueClosed
from gaia.validator.core.job import Job
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.outcomes import Errored, Fail, NotReady, Outcome, Retry, Success
from gaia.validator.core.queue import Lease, Queue

log = logging.getLogger("gaia.worker")

SETTLE_ATTEMPTS = 5
_T = TypeVar("_T")


async def apply_outcome(queue: Queue, lease: Lease, outcome: Outcome) -> Job:
    match outcome:
        case Success(value=value):
            return await queue.complete(lease, value)
        case Retry(after=after, error=error):
            return await queue.retry(lease, at=time.time() + after, error=error)
        case NotReady(until=until):
            return await queue.retry(lease, at=until, count_attempt=False)
        case Fail(error=error) | Errored(error=error):
            return await queue.fail(lease, error)
    raise TypeError(f"not an outcome: {outcome!r}")


async def settle(queue: Queue, lease: Lease, outcome: Outcome) -> Job | None:
    """Record ``outcome``; retries transient queue errors until the lease would have run out.

    Returns None when the lease was lost (cancelled or reclaimed), or could not be written:
    that attempt's outcome is discarded, and whoever holds the job next decides its fate.
    (A write that never answers is the pool's to give up: see ``WorkerPool._writing``.)
    """
    return await _recorded(lease, lambda: apply_outcome(queue, lease, outcome))


async def complete_and_claim(
    queue: Queue,
    lease: Lease,
    value: JSONValue,
    types: Collection[str] | None,
    lease_seconds: float,
) -> tuple[Job, list[Lease]] | None:
    """Record a success and claim the slot's next job in one call, retried like ``settle``."""
    return await _recorded(
        lease,
        lambda: queue.complete_and_claim(
            lease, value, count=1, types=types, lease_seconds=lease_seconds
        ),
    )


async def _recorded(lease: Lease, write: Callable[[], Awaitable[_T]]) -> _T | None:
    delay = 0.05
    for attempt in range(1, SETTLE_ATTEMPTS + 1):
        try:
            return await write()
        except LeaseLost as exc:
            log.warning("outcome of job %s discarded: %s", lease.job_id, exc)
            return None
        except QueueClosed:
            raise
        except Exception:
            if attempt == SETTLE_ATTEMPTS or time.time() + delay > lease.expires_at:
                log.exception("could not record outcome of job %s", lease.job_id)
                return None
            log.warning("recording outcome of job %s failed; retrying", lease.job_id, exc_info=True)
            await asyncio.sleep(delay)
            delay *= 2
    return None


async def release(queue: Queue, lease: Lease) -> None:
    """Hand a claim back (shutdown). Never raises: a lease already gone needs nothing, and one
    that cannot be handed back is reclaimed by a reaper when it expires."""
    try:
        await queue.release(lease)
    except LeaseLost:
        log.info("job %s was no longer held at release", lease.job_id)
    except Exception as exc:
        log.warning(
            "could not hand back job %s (%s); it is reclaimed when its lease expires",
            lease.job_id,
            exc,
        )
