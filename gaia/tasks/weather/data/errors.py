"""Typed failures of weather data loading; every one carries a human-readable reason.

The hierarchy lets a caller tell "the miner's data is bad" (`VerificationError`, `DataCheckError`)
from "the run is misconfigured" (`StoreError`, `AlignmentError`, `ClimatologyError`). Stdlib only.
"""

from __future__ import annotations

from enum import Enum


class WeatherDataError(Exception):
    """Base class: something about the weather data prevents loading it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StoreError(WeatherDataError):
    """A store cannot be opened safely: missing, symlinked, escaping paths, oversize metadata."""


class VerificationError(WeatherDataError):
    """Integrity failure of a miner's store (spec section 6): the response scores 0."""


class ClaimedHashMismatch(VerificationError):
    """The manifest on disk does not hash to the frozen claimed hash."""


class UnknownChunkError(VerificationError):
    """A file in the store (or a key read) is not listed in the frozen manifest."""

    def __init__(self, relpath: str, reason: str) -> None:
        super().__init__(reason)
        self.relpath = relpath


class ChunkHashMismatch(VerificationError):
    """A file's bytes do not hash to its manifest entry."""

    def __init__(self, relpath: str, reason: str) -> None:
        super().__init__(reason)
        self.relpath = relpath


class MissingChunkError(VerificationError):
    """A file listed in the manifest is absent from the store."""

    def __init__(self, relpath: str, reason: str) -> None:
        super().__init__(reason)
        self.relpath = relpath


class AlignmentError(WeatherDataError):
    """Grids, times or levels cannot be matched."""


class GridError(AlignmentError):
    """A grid is malformed (not monotonic, duplicated, missing coordinates)."""


class TimeMatchError(AlignmentError):
    """No time within the tolerance of the wanted valid time."""


class LevelMatchError(AlignmentError):
    """No pressure level within the tolerance of the wanted level."""


class ClimatologyError(WeatherDataError):
    """The climatology lacks the wanted variable, day of year or hour."""


class CheckKind(Enum):
    """Why an ERA5-stage data check failed (spec section 6)."""

    MISSING_VARIABLE = "missing_variable"
    UNITS = "units"
    TIME = "time"
    LEVEL = "level"
    SHAPE = "shape"
    MANIPULATION = "manipulation"
    COVERAGE = "coverage"


class DataCheckError(WeatherDataError):
    """A data check failed; the job fails for that miner with this reason."""

    def __init__(
        self,
        kind: CheckKind,
        reason: str,
        *,
        variable: str | None = None,
        level: int | None = None,
    ) -> None:
        super().__init__(reason)
        self.kind = kind
        self.variable = variable
        self.level = level
