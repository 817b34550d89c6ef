"""Summarise shadow records: how many comparisons disagreed, where, by how much, and how fast.

Mismatch paths are grouped with list indices replaced by ``[*]`` (``leads[3].z`` and ``leads[7].z``
are both ``leads[*].z``). Timings are per code path (legacy and new) over every record in which
that path ran to completion; percentiles interpolate linearly between the sorted values.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gaia.validator.migration.compare import Mismatch
from gaia.validator.migration.flags import Route
from gaia.validator.migration.record import ShadowRecord

_LIST_INDEX = re.compile(r"\[\d+\]")


@dataclass(frozen=True)
class PathSummary:
    """Mismatches at one normalised path: how many, the largest differences, and one example."""

    path: str
    count: int
    max_abs_diff: float | None
    max_rel_diff: float | None
    example: Mismatch


@dataclass(frozen=True)
class RouteTiming:
    """Seconds one code path took: number of runs, median and 95th percentile."""

    route: Route
    runs: int
    p50: float
    p95: float


@dataclass(frozen=True)
class ShadowReport:
    """The aggregate of a set of shadow records.

    ``speedup`` is legacy p50 / new p50 (above 1 means the new path is faster); ``paired_speedup``
    is the median over records of legacy seconds / new seconds for the same key.
    """

    compared: int
    with_mismatches: int
    mismatch_total: int
    shadow_failures: int
    paths: tuple[PathSummary, ...]
    legacy: RouteTiming | None
    new: RouteTiming | None
    speedup: float | None
    paired_speedup: float | None

    @property
    def clean(self) -> bool:
        """True when at least one comparison ran and none disagreed."""
        return self.compared > 0 and self.with_mismatches == 0


def normalise_path(path: str) -> str:
    """Replace list indices by ``[*]``: ``leads[3].variables.z`` -> ``leads[*].variables.z``."""
    return _LIST_INDEX.sub("[*]", path)


def percentile(values: Sequence[float], fraction: float) -> float:
    """The ``fraction`` quantile (0..1) of ``values``, interpolating linearly between ranks."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"percentile fraction must be in [0, 1], got {fraction!r}")
    ordered = sorted(values)
    position = fraction * (len(ordered) - 1)
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    weight = position - below
    return ordered[below] + (ordered[above] - ordered[below]) * weight


def summarise(records: Iterable[ShadowRecord]) -> ShadowReport:
    """Aggregate ``records`` into a ``ShadowReport``; paths are ordered by count, then name."""
    records = list(records)
    groups: dict[str, list[Mismatch]] = {}
    for record in records:
        for mismatch in record.mismatches:
            groups.setdefault(normalise_path(mismatch.path), []).append(mismatch)
    paths = sorted(
        (_summarise_path(path, mismatches) for path, mismatches in groups.items()),
        key=lambda summary: (-summary.count, summary.path),
    )
    legacy = [s for r in records if (s := r.legacy_seconds) is not None]
    new = [s for r in records if (s := r.new_seconds) is not None]
    legacy_timing = _timing(Route.LEGACY, legacy)
    new_timing = _timing(Route.NEW, new)
    return ShadowReport(
        compared=len(records),
        with_mismatches=sum(1 for record in records if record.mismatches),
        mismatch_total=sum(len(record.mismatches) for record in records),
        shadow_failures=sum(1 for record in records if record.shadow_failed),
        paths=tuple(paths),
        legacy=legacy_timing,
        new=new_timing,
        speedup=_ratio(legacy_timing, new_timing),
        paired_speedup=_paired_speedup(records),
    )


def _summarise_path(path: str, mismatches: list[Mismatch]) -> PathSummary:
    abs_diffs = [m.abs_diff for m in mismatches if m.abs_diff is not None]
    rel_diffs = [m.rel_diff for m in mismatches if m.rel_diff is not None]
    return PathSummary(
        path=path,
        count=len(mismatches),
        max_abs_diff=max(abs_diffs) if abs_diffs else None,
        max_rel_diff=max(rel_diffs) if rel_diffs else None,
        example=mismatches[0],
    )


def _timing(route: Route, seconds: list[float]) -> RouteTiming | None:
    if not seconds:
        return None
    return RouteTiming(route, len(seconds), percentile(seconds, 0.5), percentile(seconds, 0.95))


def _ratio(legacy: RouteTiming | None, new: RouteTiming | None) -> float | None:
    if legacy is None or new is None or new.p50 <= 0:
        return None
    return legacy.p50 / new.p50


def _paired_speedup(records: list[ShadowRecord]) -> float | None:
    ratios = [
        legacy / new
        for record in records
        if (legacy := record.legacy_seconds) is not None
        and (new := record.new_seconds) is not None
        and new > 0
    ]
    return percentile(ratios, 0.5) if ratios else None
