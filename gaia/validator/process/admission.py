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
        self._durations: dict[str, deque[float]] = {}

    def observe_duration(self, function: str, seconds: float) -> None:
        self._durations.setdefault(function, deque(maxlen=_HISTORY)).append(seconds)

    def is_short(self, function: str, threshold: float) -> bool:
        """True once ``function`` ran a few times and never took ``threshold`` seconds lately."""
        durations = self._durations.get(function)
        return durations is not None and len(durations) >= 3 and max(durations) < threshold

    def estimate(self, function: str, declared_bytes: int | None) -> tuple[int, str]:
        """The estimate for one call and where it came from: declared, learned or default."""
        if declared_bytes is not None:
            return declared_bytes, "declared"
        peaks = self._peaks.get(function)
        if peaks:
            learned = max(peaks)
            if self._budget is not None:
                learned = min(learned, self._budget)
            return learned, "learned"
        return self._default, "default"

    def observe(self, function: str, peak_bytes: int) -> None:
        """Record the peak RSS one run of ``function`` reached."""
        if peak_bytes <= 0:
            return
        self._peaks.setdefault(function, deque(maxlen=_HISTORY)).append(peak_bytes)

    def learned(self) -> dict[str, int]:
        return {function: max(peaks) for function, peaks in self._peaks.items() if peaks}


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

    def admit_head(self) -> Item:
        """Pop the head and hold its estimate; call only after ``head_admissible()``."""
        item, estimate = self._waiting.popleft()
        self._running[item] = _Holding(estimate, estimate)
        self._held += estimate
        self.peak_running = max(self.peak_running, len(self._running))
        self.peak_held_bytes = max(self.peak_held_bytes, self._held)
        return item

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
