"""Claims asked for in the same event-loop turn share one claim script call.

Ten worker slots that each call ``claim`` at once cost the server one script run that claims up
to ten jobs (each for its own worker id), instead of ten runs. Requests are grouped by what the
script needs to be the same for all of them: the job types and the lease length. Each request
gets its own job, in claim order, or none when fewer were due.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from gaia.validator.queues.redis.pipelining import Reply

Claimed = tuple[str, list[bytes]]  # job id, the job's fields (name, value, ...)
ClaimRun = Callable[[Sequence[str], Sequence[str], float], Awaitable[Reply]]
_Key = tuple[tuple[str, ...], float]


class ClaimBatcher:
    """Groups single claims per event-loop turn; ``run(workers, types, lease_seconds)`` claims."""

    def __init__(self, run: ClaimRun) -> None:
        self._run = run
        self._waiting: dict[_Key, list[tuple[str, asyncio.Future[Outcome]]]] = {}
        self._sending: set[asyncio.Task[None]] = set()

    def claim(
        self, worker_id: str, types: Sequence[str], lease_seconds: float
    ) -> Awaitable[Outcome]:
        """One job for ``worker_id`` (or None) and the next delayed job's due time."""
        key = (tuple(types), lease_seconds)
        loop = asyncio.get_running_loop()
        reply: asyncio.Future[Outcome] = loop.create_future()
        group = self._waiting.setdefault(key, [])
        if not group:
            loop.call_soon(self._send, key)
        group.append((worker_id, reply))
        return reply

    def _send(self, key: _Key) -> None:
        group = self._waiting.pop(key)
        task = asyncio.create_task(self._claim_for(key, group))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _claim_for(self, key: _Key, group: list[tuple[str, asyncio.Future[Outcome]]]) -> None:
        types, lease_seconds = key
        try:
            reply = await self._run([worker for worker, _ in group], types, lease_seconds)
        except asyncio.CancelledError:
            for _, waiting in group:
                waiting.cancel()
            raise
        except Exception as error:
            for _, waiting in group:
                if not waiting.done():
                    waiting.set_exception(error)
            return
        next_due, claimed = split_claim_reply(reply)
        for n, (_, waiting) in enumerate(group):
            if not waiting.done():
                waiting.set_result((claimed[n] if n < len(claimed) else None, next_due))


Outcome = tuple[Claimed | None, float | None]


def split_claim_reply(reply: Reply) -> tuple[float | None, list[Claimed]]:
    """The claim script's reply as (next due time or None, [(job id, fields), ...])."""
    assert isinstance(reply, list)
    next_due = float(reply[0]) if reply[0] else None
    claimed = [
        (job_id.decode(), flat) for job_id, flat in zip(reply[1::2], reply[2::2], strict=True)
    ]
    return next_due, claimed
