"""The results store's own value types and errors (the scoring dataclasses it stores live in
``gaia.tasks.weather.fields`` and ``gaia.tasks.weather.scoring``). Standard library only."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import Literal

from gaia.tasks.weather.data.errors import CheckKind

StageName = Literal["day1", "era5"]
"""A scoring stage, spelled as the loader's ``Stage.value``."""
STAGES: tuple[StageName, ...] = ("day1", "era5")


class ResultsError(RuntimeError):
    """The results database cannot be used, or a stored row cannot be decoded."""


class ResultsURLError(ValueError):
    """A results URL is malformed or names an unknown scheme or option."""


class SchemaTooNew(ResultsError):
    """The database was migrated by a newer version of this code."""


class RunConflict(ResultsError):
    """A run is saved again with an initialisation time other than the stored one."""


class FailureKind(Enum):
    """Why a (run, miner, stage) produced no score."""

    VERIFICATION_FAILED = "verification_failed"
    """The forecast store failed integrity verification (the response scores 0)."""
    DATA_CHECK_FAILED = "data_check_failed"
    """A data check of spec section 6 failed; ``StageFailure.check`` says which."""
    ERROR = "error"
    """An unexpected error, recorded with its reason instead of a number."""


@dataclass(frozen=True)
class StageFailure:
    """One stage of one miner in one run failed, and why."""

    stage: StageName
    kind: FailureKind
    reason: str
    check: CheckKind | None = None
    """The data check that failed; set exactly when kind is DATA_CHECK_FAILED."""

    def __post_init__(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        if not isinstance(self.kind, FailureKind):
            raise TypeError(f"kind must be a FailureKind, got {self.kind!r}")
        if not isinstance(self.reason, str) or not self.reason:
            raise ValueError("a stage failure needs a non-empty reason")
        if (self.kind is FailureKind.DATA_CHECK_FAILED) != (self.check is not None):
            raise ValueError(
                "check is required for a data check failure and not allowed otherwise "
                f"(kind {self.kind.value}, check {self.check!r})"
            )
        if self.check is not None and not isinstance(self.check, CheckKind):
            raise TypeError(f"check must be a CheckKind, got {self.check!r}")


class MinerStatus:
    """The words of ``MinerRow.status``; a failure reads ``failed: <reason>``."""

    SCORED = "scored"
    VERIFICATION_FAILED = "verification failed"
    PENDING = "pending"
    FAILED_PREFIX = "failed: "


@dataclass(frozen=True)
class MinerRow:
    """One miner's line of the per-run report."""

    hotkey: str
    uid: int | None
    day1_score: float | None
    day1_pass: bool | None
    era5_leads: Mapping[int, float] = field(default_factory=dict)
    """S_h by lead (hours) for the stored ERA5 leads."""
    era5_average: float | None = None
    overall: float | None = None
    run_value: float | None = None
    status: str = MinerStatus.PENDING
    """``scored``, ``verification failed``, ``failed: <reason>`` or ``pending``."""
    reason: str | None = None


@dataclass(frozen=True)
class WindowScores:
    """Window scores by hotkey, as computed at one moment."""

    computed_at: datetime
    scores: Mapping[str, float]
