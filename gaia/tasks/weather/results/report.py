"""The per-miner report of one run, derived from the stored results of each miner (pure)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gaia.tasks.weather.results.records import FailureKind, MinerRow, MinerStatus, StageFailure
from gaia.tasks.weather.scoring.aggregate import OverallScore, RunValue
from gaia.tasks.weather.scoring.era5 import Era5Result, Era5Status

if TYPE_CHECKING:
    from gaia.tasks.weather.scoring.day1 import Day1Result


@dataclass
class MinerResults:
    """Everything stored for one miner of one run (None or empty where nothing is)."""

    hotkey: str
    uid: int | None = None
    day1: Day1Result | None = None
    era5: Era5Result | None = None
    leads: dict[int, float] = field(default_factory=dict)
    failures: list[StageFailure] = field(default_factory=list)
    overall: OverallScore | None = None
    run_value: RunValue | None = None


def miner_status(results: MinerResults) -> tuple[str, str | None]:
    """(status, reason): a verification failure first, then any other failure, then scored.

    A failure is a stage failure, a day-1 result that is not a score, or a failed ERA5
    aggregation. ``scored`` needs some stored score; with none the miner is ``pending``.
    """
    from gaia.tasks.weather.scoring.day1 import Day1Status

    day1 = results.day1
    for failure in results.failures:
        if failure.kind is FailureKind.VERIFICATION_FAILED:
            return MinerStatus.VERIFICATION_FAILED, failure.reason
    if day1 is not None and day1.status is Day1Status.VERIFICATION_FAILED:
        return MinerStatus.VERIFICATION_FAILED, day1.reason
    reasons = [failure.reason for failure in results.failures]
    if day1 is not None and day1.status is Day1Status.ERROR:
        reasons.append(day1.reason or "day-1 error")
    if results.era5 is not None and results.era5.status is Era5Status.FAILED:
        reasons.append(f"ERA5 aggregation failed: {results.era5.reason}")
    if reasons:
        return MinerStatus.FAILED_PREFIX + reasons[0], reasons[0]
    scored = (day1, results.era5, results.overall, results.run_value)
    if any(part is not None for part in scored):
        return MinerStatus.SCORED, None
    return MinerStatus.PENDING, None


def miner_row(results: MinerResults) -> MinerRow:
    status, reason = miner_status(results)
    day1, era5 = results.day1, results.era5
    return MinerRow(
        hotkey=results.hotkey,
        uid=results.uid,
        day1_score=None if day1 is None else day1.score,
        day1_pass=None if day1 is None else day1.passed,
        era5_leads=dict(sorted(results.leads.items())),
        era5_average=None if era5 is None else era5.average,
        overall=None if results.overall is None else results.overall.value,
        run_value=None if results.run_value is None else results.run_value.value,
        status=status,
        reason=reason,
    )


def miner_table(miners: Mapping[str, MinerResults]) -> list[MinerRow]:
    """One row per miner, by uid (unknown uids last), then hotkey."""
    ordered = sorted(
        miners.values(),
        key=lambda m: (m.uid is None, m.uid if m.uid is not None else 0, m.hotkey),
    )
    return [miner_row(results) for results in ordered]
