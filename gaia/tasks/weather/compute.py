"""Entry points for the CPU-heavy part of a scoring job, run in a child process.

Each function is module-level (importable by name in a spawned child) and takes plain data
(FieldInputs carry numpy arrays, which the process pool moves through shared memory). Choosing
a scorer by name keeps the two implementations swappable by a feature flag.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics, FieldScorer
from gaia.tasks.weather.scoring.config import Day1Config, MetricConfig
from gaia.tasks.weather.scoring.day1 import Day1Result, score_day1

ScorerName = Literal["fast", "reference"]
SCORER_NAMES: tuple[ScorerName, ...] = ("fast", "reference")


def make_scorer(name: ScorerName, config: MetricConfig | None = None) -> FieldScorer:
    """The named scorer: ``fast`` (fused one-pass kernels) or ``reference`` (clear xarray)."""
    if name == "fast":
        from gaia.tasks.weather.scoring.kernels import FastScorer

        return FastScorer(config)
    if name == "reference":
        from gaia.tasks.weather.scoring.reference import ReferenceScorer

        return ReferenceScorer(config)
    raise ValueError(f"unknown scorer {name!r}; use one of {SCORER_NAMES}")


def score_fields(
    fields: Sequence[FieldInputs], scorer: ScorerName, config: MetricConfig | None = None
) -> list[FieldMetrics]:
    """Every per-field metric of ``fields`` (e.g. one variable's levels at one lead)."""
    chosen = make_scorer(scorer, config)
    return [chosen.score(inputs) for inputs in fields]


def score_day1_fields(
    fields: Sequence[FieldInputs],
    scorer: ScorerName,
    config: Day1Config | None = None,
    metric_config: MetricConfig | None = None,
) -> Day1Result:
    """The day-1 stage for one miner's fields: unit conversion, metrics, checks, Day1."""
    return score_day1(fields, make_scorer(scorer, metric_config), config)
