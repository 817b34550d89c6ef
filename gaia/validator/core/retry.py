"""Retry policy: exponential backoff with full jitter, a cap, and a maximum number of attempts.

The delay before attempt ``n + 1`` (after ``n`` failed attempts) is drawn uniformly from
``[0, min(cap, base * multiplier ** (n - 1))]`` ("full jitter"), so retries of many jobs that failed
together spread out instead of stampeding. After ``max_attempts`` attempts the job is dead-lettered
with its last error and traceback.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 3
    base_delay: float = 1.0
    max_delay: float = 300.0
    multiplier: float = 2.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be >= 1, got {self.max_attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError("RetryPolicy delays must be >= 0")
        if self.multiplier < 1:
            raise ValueError(f"RetryPolicy.multiplier must be >= 1, got {self.multiplier}")

    def ceiling(self, attempts: int) -> float:
        """The largest delay after ``attempts`` failed attempts (before jitter)."""
        exponent = max(0, attempts - 1)
        # Cap the exponent so huge attempt counts never overflow a float.
        raw = self.base_delay * self.multiplier ** min(exponent, 64)
        return min(self.max_delay, raw)

    def delay(self, attempts: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after ``attempts`` failed attempts."""
        ceiling = self.ceiling(attempts)
        if not self.jitter:
            return ceiling
        return (rng or random).uniform(0.0, ceiling)

    def exhausted(self, attempts: int, max_attempts: int | None = None) -> bool:
        """True when ``attempts`` leaves no attempt under ``max_attempts`` (the job's, if given)."""
        return attempts >= (self.max_attempts if max_attempts is None else max_attempts)


NO_RETRY = RetryPolicy(max_attempts=1)
