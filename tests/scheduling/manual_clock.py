"""A clock the scheduling tests move by hand, shared by a queue and its schedulers."""

from __future__ import annotations


class ManualClock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now
