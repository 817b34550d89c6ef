"""One shadow comparison as plain data: which path was primary, both timings, every mismatch."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime

from gaia.validator.migration.compare import Mismatch
from gaia.validator.migration.flags import Route

SHADOW_FAILURE_PATH = "<shadow>"
"""The path of the mismatch that records a failed shadow run (its text: ``shadow failed: ...``)."""

COMPARISON_FAILURE_PATH = "<comparison>"
"""The path of the mismatch that records a comparator error (e.g. a cyclic output)."""


@dataclass(frozen=True)
class ShadowRecord:
    """The outcome of running one key on both paths.

    ``key`` holds the key parts (e.g. run id and miner hotkey); ``primary`` is the path whose
    output was returned to the caller; ``shadow_seconds`` is None when the shadow path did not run.
    ``created_at`` is timezone-aware (UTC).
    """

    key: tuple[str, ...]
    primary: Route
    primary_seconds: float
    shadow_seconds: float | None
    mismatches: list[Mismatch]
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    flag: str = ""

    def __post_init__(self) -> None:
        if isinstance(self.key, str) or not all(isinstance(part, str) for part in self.key):
            raise TypeError(f"shadow record key must be a tuple of strings, got {self.key!r}")
        object.__setattr__(self, "key", tuple(self.key))
        if not isinstance(self.primary, Route):
            raise TypeError(f"shadow record primary must be a Route, got {self.primary!r}")
        if self.created_at.tzinfo is None:
            raise ValueError("shadow record created_at must be timezone-aware")

    @property
    def shadow_failed(self) -> bool:
        return any(m.path == SHADOW_FAILURE_PATH for m in self.mismatches)

    @property
    def legacy_seconds(self) -> float | None:
        """How long the legacy path took; None if it did not run or (as shadow) failed."""
        return self._seconds(Route.LEGACY)

    @property
    def new_seconds(self) -> float | None:
        """How long the new path took; None if it did not run or (as shadow) failed."""
        return self._seconds(Route.NEW)

    def _seconds(self, route: Route) -> float | None:
        if route is self.primary:
            return self.primary_seconds
        return None if self.shadow_failed else self.shadow_seconds
