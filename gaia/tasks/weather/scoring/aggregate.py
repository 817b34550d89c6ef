"""Run and window aggregation (spec section 5).

overall = clamp(0.95 ERA5_avg + 0.05 day1_pass, 0, 1) recomputed from the stored components;
the per-run value is overall plus the best-miner bonus, clipped to [0, 1.1]; the window score is
the mean of a miner's per-run values over the runs initialised in the last 15 days, a missed run
counting 0. Pure Python: no heavy imports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from gaia.tasks.weather.scoring.config import AggregateConfig
from gaia.tasks.weather.scoring.era5 import Era5Result, Era5Status


@dataclass(frozen=True)
class OverallScore:
    """A miner's overall score in one run and where it came from."""

    value: float
    day1_pass: bool
    era5_average: float | None
    """None before any ERA5 lead, or when the ERA5 aggregation failed (see reason)."""
    reason: str | None = None


def overall_score(
    day1_pass: bool, era5: Era5Result | None, config: AggregateConfig | None = None
) -> OverallScore:
    """overall from the stored components; idempotent, so it can be recomputed per lead.

    Before any ERA5 lead (era5 None or no lead scored) it is day1_weight * day1_pass. A failed
    ERA5 aggregation contributes 0 and its reason is carried along.
    """
    config = config or AggregateConfig()
    day1_part = config.day1_weight * (1.0 if day1_pass else 0.0)
    if era5 is None or (era5.status is Era5Status.SCORED and not era5.leads):
        return OverallScore(day1_part, day1_pass, None)
    if era5.status is Era5Status.FAILED or era5.average is None:
        reason = f"ERA5 aggregation failed: {era5.reason}"
        return OverallScore(day1_part, day1_pass, None, reason)
    value = min(1.0, max(0.0, config.era5_weight * era5.average + day1_part))
    return OverallScore(value, day1_pass, era5.average)


@dataclass(frozen=True)
class RunValue:
    """A miner's per-run value: overall + bonus, clipped to [value_min, value_max]."""

    overall: float
    bonus: float
    value: float


def run_values(
    overall: Mapping[str, float], config: AggregateConfig | None = None
) -> dict[str, RunValue]:
    """Per-run values of every miner of one run (keyed by hotkey).

    The best miner gets the bonus when its overall >= bonus_min_score and some miner of the run
    scored above bonus_requires_score_above; tied best miners (exactly equal overall) share it
    when there are at most bonus_max_ties of them, and nobody gets it beyond that.
    """
    config = config or AggregateConfig()
    for hotkey, score in overall.items():
        if not math.isfinite(score):
            raise ValueError(f"overall score of {hotkey} is not finite: {score}")
    bonus: dict[str, float] = {}
    if overall:
        best = max(overall.values())
        leaders = [hotkey for hotkey, score in overall.items() if score == best]
        anyone_scored = any(s > config.bonus_requires_score_above for s in overall.values())
        few_enough = len(leaders) <= config.bonus_max_ties
        if best >= config.bonus_min_score and anyone_scored and few_enough:
            bonus = {hotkey: config.bonus / len(leaders) for hotkey in leaders}
    result: dict[str, RunValue] = {}
    for hotkey, score in overall.items():
        extra = bonus.get(hotkey, 0.0)
        value = min(config.value_max, max(config.value_min, score + extra))
        result[hotkey] = RunValue(score, extra, value)
    return result


@dataclass(frozen=True)
class RunRecord:
    """The per-run values of one run (hotkey -> value) and the run's initialisation time."""

    run_id: str
    init_time: datetime
    values: Mapping[str, float]


def window_scores(
    runs: Sequence[RunRecord],
    now: datetime,
    miners: Iterable[str] | None = None,
    config: AggregateConfig | None = None,
) -> dict[str, float]:
    """Mean per-run value of each miner over the runs with now - window <= init_time <= now.

    A run the miner is absent from counts 0. miners defaults to every miner of those runs; with
    no run in the window every requested miner scores 0. Times must be timezone-aware.
    """
    config = config or AggregateConfig()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    for run in runs:
        if run.init_time.tzinfo is None:
            raise ValueError(f"run {run.run_id}: init_time must be timezone-aware")
    start = now - timedelta(days=config.window_days)
    recent = [run for run in runs if start <= run.init_time <= now]
    wanted = (
        list(miners)
        if miners is not None
        else sorted({hotkey for run in recent for hotkey in run.values})
    )
    if not recent:
        return {hotkey: 0.0 for hotkey in wanted}
    return {
        hotkey: math.fsum(run.values.get(hotkey, 0.0) for run in recent) / len(recent)
        for hotkey in wanted
    }
