"""Per-type concurrency: at most N jobs of a given type run at once in one pool.

The pool keeps one priority-ordered claim over its subscribed types; a type at its limit is
left out of the claim until one of its jobs ends, and a claim never asks for more jobs than the
tightest remaining allowance among the limited types it includes (so one call cannot overshoot
a limit). Unlimited types are bounded by the pool's slots only.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Mapping


class TypeLimits:
    def __init__(self, limits: Mapping[str, int], subscribed: Collection[str] | None) -> None:
        for job_type, limit in limits.items():
            if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
                raise ValueError(
                    f"type limit of {job_type!r} must be an integer >= 1, got {limit!r}"
                )
        if limits and subscribed is None:
            raise ValueError(
                "type limits need an explicit list of job types to claim (a pool subscribed to "
                "every type cannot leave a type out of its claim)"
            )
        unknown = sorted(set(limits) - set(subscribed or ()))
        if unknown:
            raise ValueError(f"type limits name job types this pool does not claim: {unknown}")
        self._limits = dict(limits)
        self._running: Counter[str] = Counter()

    def __bool__(self) -> bool:
        return bool(self._limits)

    def running(self, job_type: str) -> int:
        return self._running[job_type]

    def began(self, job_type: str) -> None:
        if job_type in self._limits:
            self._running[job_type] += 1

    def ended(self, job_type: str) -> bool:
        """Count one job of ``job_type`` as ended; True when that frees room under a limit."""
        if job_type not in self._limits:
            return False
        self._running[job_type] -= 1
        return True

    def claimable(self, types: list[str] | None, finishing: str | None = None) -> list[str] | None:
        """``types`` without those at their limit (counting the job of type ``finishing`` as
        ended: its slot claims its own successor). None stays None: every type."""
        if not self._limits or types is None:
            return types
        return [job_type for job_type in types if self._room(job_type, finishing) > 0]

    def allowance(self, types: list[str] | None, wanted: int) -> int:
        """How many jobs one claim over ``types`` may take, at most ``wanted``."""
        if not self._limits or types is None:
            return wanted
        rooms = [self._room(job_type, None) for job_type in types if job_type in self._limits]
        return min([wanted, *rooms])

    def _room(self, job_type: str, finishing: str | None) -> int:
        limit = self._limits.get(job_type)
        if limit is None:
            return 1  # unlimited: any positive number will do
        return limit - self._running[job_type] + (1 if job_type == finishing else 0)
