"""The slots of one schedule that are due and not yet enqueued, kept by its catch-up policy.

Pure bookkeeping, no I/O and no clock of its own: the scheduler feeds it the time. The waiting
slots are always one contiguous run ``range(first, next_slot)``, oldest first, because slots
come due in order and leave it only from the front (enqueued, found in the queue, or dropped by
the policy), so two integers hold it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gaia.validator.scheduling.schedule import CatchUp, Schedule


@dataclass
class Backlog:
    schedule: Schedule
    first: int
    """The oldest slot waiting to be enqueued (== ``next_slot`` when none waits)."""
    next_slot: int
    """The first slot that was not yet due at the last :meth:`advance`."""

    @classmethod
    def at_start(
        cls, schedule: Schedule, now: float, retention: float = float("inf")
    ) -> Backlog:
        """The slots a scheduler starting at ``now`` owes, derived from the clock alone.

        "latest": the last slot whose time is <= now (none before ``start``). "all": that slot
        and up to ``max_catch_up - 1`` before it. "none": no slot (the first is the next one).
        Never a slot whose time is ``retention`` or more before ``now``: its job, had it run,
        may have been purged already, so whether it ran cannot be told (running it again
        would be the double run the deterministic ids exist to prevent).
        """
        latest = schedule.latest_due(now)
        if latest is None:
            return cls(schedule, 0, 0)
        if schedule.catch_up is CatchUp.NONE:
            return cls(schedule, latest + 1, latest + 1)
        first = max(0, latest + 1 - schedule.catch_up_limit)
        unknowable = schedule.latest_due(now - retention) if math.isfinite(retention) else None
        if unknowable is not None:
            first = max(first, unknowable + 1)
        return cls(schedule, first, latest + 1)

    @property
    def waiting(self) -> range:
        return range(self.first, self.next_slot)

    @property
    def head(self) -> int | None:
        """The oldest waiting slot, the one to enqueue next."""
        return self.first if self.first < self.next_slot else None

    @property
    def next_due(self) -> float:
        """When the next slot comes due (POSIX seconds)."""
        return self.schedule.slot_time(self.next_slot)

    def advance(self, now: float) -> range:
        """Add the slots due by ``now``; return those the policy dropped (oldest first).

        The policy keeps the newest ``catch_up_limit`` waiting slots (one, except for "all"):
        older ones, waiting or never seen (the scheduler slept past them), are dropped.
        """
        latest = self.schedule.latest_due(now)
        if latest is not None and latest >= self.next_slot:
            self.next_slot = latest + 1
        return self._drop_before(self.next_slot - self.schedule.catch_up_limit)

    def settle_head(self) -> int:
        """The head slot is in the queue: it waits no longer. Returns it."""
        head = self.head
        if head is None:
            raise RuntimeError(f"schedule {self.schedule.name}: no slot is waiting")
        self.first += 1
        return head

    def supersede(self, slot: int) -> range:
        """A run of ``slot`` is already active: waiting slots up to it are dropped."""
        return self._drop_before(slot + 1)

    def _drop_before(self, slot: int) -> range:
        keep_from = min(max(self.first, slot), self.next_slot)
        dropped = range(self.first, keep_from)
        self.first = keep_from
        return dropped
