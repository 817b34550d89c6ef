"""Admission control: which waiting task may start now, given memory and the worker limit.

Policy (strict FIFO, head of line):

* Tasks wait in arrival order. Only the oldest waiting task is ever considered; while it does not
  fit, nothing behind it starts, even a small task that would fit. This costs some utilisation
  but guarantees that a big task cannot be starved by a stream of small ones: it waits at most
  until enough running tasks finish, and every task that arrived after it waits behind it.
* The head starts when (a) its estimate fits the budget minus what running tasks hold, (b) fewer
  than ``max_running`` tasks run, and (c) admissions are not paused (system available memory
  below the floor; see ``memory.py``).
* A running task holds max(its estimate, the RSS last sampled from its child): a task that grows
  past its estimate shrinks what others may take, instead of letting the sum overshoot unseen.
* A short task sent ahead to a busy child (pipelining, see ``PoolSettings.prefetch``) holds
  nothing while it waits there: it can only start once the task before it ended, and it is only
  queued behind a task whose estimate covers its own.
* An estimate is the declared ``memory_mb`` if given, else the largest peak RSS observed for that
  function (keyed by qualified name) over its last few runs, else a default. A learned estimate
  larger than the whole budget is capped at the budget (the task then runs alone); a declared
  one is rejected by the pool with a clear error, since it could never start.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Item = TypeVar("Item", bound=Hashable)

_HISTORY = 8


class EstimateBook:
    """Learned per function: memory (the max of recent peaks) and recent run times."""

    def __init__(self, default_bytes: int, budget_bytes: int | None) -> None:
        self._default = default_bytes
        self._budget = budget_bytes
        self._peaks: dict[str, deque[int]] = {}
        self._learned: dict[str, int] = {}
        self._durations: dict[str, deque[float]] = {}
        self._longest: dict[str, float] = {}

    def observe_duration(self, function: str, seconds: float) -> None:
        durations = self._durations.setdefault(function, deque(maxlen=_HISTORY))
        durations.append(seconds)
        if len(durations) >= 3:
            self._longest[function] = max(durations)

    def is_short(self, function: str, threshold: float) -> bool:
        """True once ``function`` ran a few times and never took ``threshold`` seconds lately."""
        return self._longest.get(function, threshold) < threshold

    def estimate(self, function: str, declared_bytes: int | None) -> tuple[int, str]:
        """The estimate for one call and where it came from: declared, learned or default."""
        if declared_bytes is not None:
            return declared_bytes, "declared"
        learned = self._learned.get(function)
        if learned is not None:
            return learned, "learned"
        return self._default, "default"

    def observe(self, function: str, peak_bytes: int) -> None:
        """Record the peak RSS one run of ``function`` reached."""
        if peak_bytes <= 0:
            return
        peaks = self._peaks.setdefault(function, deque(maxlen=_HISTORY))
        peaks.append(peak_bytes)
        learned = max(peaks)
        if self._budget is not None:
            learned = min(learned, self._budget)
        self._learned[function] = learned

    def learned(self) -> dict[str, int]:
        return dict(self._learned)


@dataclass
class _Holding:
    estimate: int
    held: int


class AdmissionQueue(Generic[Item]):
    """The FIFO of waiting items and the memory held by admitted (running) ones."""

    def __init__(self, budget_bytes: int | None, max_running: int) -> None:
        if max_running < 1:
            raise ValueError(f"max_running must be at least 1, got {max_running}")
        self.budget_bytes = budget_bytes
        self.max_running = max_running
        self._waiting: deque[tuple[Item, int]] = deque()
        self._running: dict[Item, _Holding] = {}
        self._held = 0
        self.paused = False
        self.peak_running = 0
        self.peak_held_bytes = 0

    @property
    def waiting_count(self) -> int:
        return len(self._waiting)

    @property
    def running_count(self) -> int:
        return len(self._running)

    @property
    def held_bytes(self) -> int:
        return self._held

    def peek(self) -> Item:
        """The oldest waiting item (call only when one is waiting)."""
        return self._waiting[0][0]

    def push(self, item: Item, estimate_bytes: int) -> None:
        self._waiting.append((item, estimate_bytes))

    def requeue(self, items: list[Item]) -> None:
        """Put admitted items that never started back at the head, in their order."""
        for item in reversed(items):
            holding = self._running.get(item)
            if holding is None:
                continue
            self.release(item)
            self._waiting.appendleft((item, holding.estimate))

    def remove(self, item: Item) -> bool:
        """Take a waiting item out (its caller gave up); False if it is not waiting."""
        for index, (waiting, _) in enumerate(self._waiting):
            if waiting == item:
                del self._waiting[index]
                return True
        return False

    def drain_waiting(self) -> list[Item]:
        """Remove and return every waiting item (the pool is closing)."""
        items = [item for item, _ in self._waiting]
        self._waiting.clear()
        return items

    def head_admissible(self) -> bool:
        """True if the oldest waiting item may start now (memory, count and pause permitting)."""
        if not self._waiting or self.paused or len(self._running) >= self.max_running:
            return False
        _, estimate = self._waiting[0]
        if self.budget_bytes is None:
            return True
        return self._held + estimate <= self.budget_bytes

    def head_may_queue(self) -> bool:
        """True if the head may be queued behind a running item in the same child (it then
        holds no memory of its own until it starts, see ``admit_head(queued=True)``)."""
        return bool(self._waiting) and not self.paused and len(self._running) < self.max_running

    def admit_head(self, *, queued: bool = False) -> Item:
        """Pop the head and hold its estimate; call only after ``head_admissible()``.

        ``queued``: the item waits in a child behind a running one whose holding covers it
        (the two never run at once); it holds nothing until ``start(item)``.
        """
        item, estimate = self._waiting.popleft()
        held = 0 if queued else estimate
        self._running[item] = _Holding(estimate, held)
        self._held += held
        self.peak_running = max(self.peak_running, len(self._running))
        self.peak_held_bytes = max(self.peak_held_bytes, self._held)
        return item

    def start(self, item: Item) -> None:
        """A queued item starts running: from now on it holds at least its estimate."""
        holding = self._running.get(item)
        if holding is not None and holding.held < holding.estimate:
            self._held += holding.estimate - holding.held
            holding.held = holding.estimate
            self.peak_held_bytes = max(self.peak_held_bytes, self._held)

    def observe(self, item: Item, rss_bytes: int) -> None:
        """A sampled RSS of a running item: it now holds max(estimate, rss)."""
        holding = self._running.get(item)
        if holding is None:
            return
        held = max(holding.estimate, rss_bytes)
        self._held += held - holding.held
        holding.held = held
        self.peak_held_bytes = max(self.peak_held_bytes, self._held)

    def release(self, item: Item) -> None:
        """The item's child finished or is gone: give back what it held."""
        holding = self._running.pop(item, None)
        if holding is not None:
            self._held -= holding.held
