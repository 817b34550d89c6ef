"""Day-1 checks and score (spec section 3).

Per variable: unit auto-conversion from field means, sanity checks (bounds, q >= 0, pattern
correlation with the reference), the clone-distance penalty, and the scored values skill = SS - P
and ACC. Then Day1 = 0.6 mean(max(0, skill)) + 0.4 mean((ACC + 1) / 2), the strict clamp and
day1_pass. A verification failure scores 0; an unexpected error is a failure with its reason.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics, FieldScorer
from gaia.tasks.weather.scoring.config import Day1Config, UnitRule


def _label(variable: str, level: int | None) -> str:
    return variable if level is None else f"{variable}{level}"


def detect_unit_conversion(
    variable: str, forecast_mean: float, truth_mean: float, config: Day1Config
) -> UnitRule | None:
    """The first unit rule whose conditions hold for these field means, if any."""
    for rule in config.unit_rules:
        if (
            variable in rule.variables
            and forecast_mean < rule.forecast_mean_below
            and truth_mean > rule.truth_mean_above
        ):
            return rule
    return None


def convert_units(
    inputs: FieldInputs, config: Day1Config | None = None
) -> tuple[FieldInputs, UnitRule | None]:
    """The inputs with the forecast converted when its mean shows the wrong units.

    Means are plain NaN-skipping means over the finite values.
    """
    config = config or Day1Config()
    forecast_mean = _finite_mean(inputs.forecast)
    truth_mean = _finite_mean(inputs.truth)
    rule = detect_unit_conversion(inputs.variable, forecast_mean, truth_mean, config)
    if rule is None:
        return inputs, None
    converted = np.asarray(inputs.forecast, dtype=np.float64) * rule.scale + rule.offset
    return dataclasses.replace(inputs, forecast=converted), rule


def _finite_mean(values: np.ndarray) -> float:
    finite = values[np.isfinite(values)]
    return float(np.mean(finite, dtype=np.float64)) if finite.size else math.nan


def sanity_failure(
    variable: str,
    level: int | None,
    forecast: np.ndarray,
    pattern_r: float | None,
    config: Day1Config | None = None,
) -> str | None:
    """Why the forecast fails the sanity checks, or None when it passes.

    Bounds apply to every finite value; variables listed as non-negative must have no negative
    value; r(forecast, reference) must be at least min_pattern_r (NaN fails).
    """
    config = config or Day1Config()
    label = _label(variable, level)
    finite = forecast[np.isfinite(forecast)]
    if finite.size == 0:
        return f"{label}: no finite forecast value"
    low, high = float(finite.min()), float(finite.max())
    bounds = config.bounds.get((variable, level))
    if bounds is not None and not (bounds[0] <= low and high <= bounds[1]):
        return f"{label}: values [{low:.6g}, {high:.6g}] outside bounds {list(bounds)}"
    if variable in config.non_negative_variables and low < 0.0:
        return f"{label}: negative values (min {low:.6g})"
    if pattern_r is None:
        return f"{label}: no pattern correlation with the reference"
    if not pattern_r >= config.min_pattern_r:
        return f"{label}: pattern correlation {pattern_r:.4g} < {config.min_pattern_r}"
    return None


def clone_penalty(distance: float, threshold: float, gamma: float) -> float:
    """P = gamma * max(0, 1 - D / threshold) when D < threshold, else 0 (NaN D -> 0)."""
    if not distance < threshold:
        return 0.0
    return gamma * max(0.0, 1.0 - distance / threshold)


class Day1VariableStatus(Enum):
    SCORED = "scored"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Day1VariableScore:
    """One day-1 variable: its scored values, or why it was skipped (not scored as zero)."""

    variable: str
    level: int | None
    lead_hours: int
    status: Day1VariableStatus
    skill: float
    """SS versus the reference minus the clone penalty."""
    acc: float
    clone_distance: float
    clone_threshold: float | None
    penalty: float
    conversion: str | None = None
    """Description of the unit conversion applied to the forecast, if any."""
    reason: str | None = None

    @property
    def scored(self) -> bool:
        return self.status is Day1VariableStatus.SCORED


def score_variable(
    metrics: FieldMetrics,
    forecast: np.ndarray,
    conversion: UnitRule | None = None,
    config: Day1Config | None = None,
) -> Day1VariableScore:
    """Checks and scored values of one day-1 field (metrics of the converted forecast)."""
    config = config or Day1Config()
    label = _label(metrics.variable, metrics.level)
    if metrics.clone_mse is None:
        raise ValueError(f"{label}: day-1 metrics need a reference forecast (clone_mse is None)")
    threshold = config.clone_thresholds.get((metrics.variable, metrics.level))
    distance = metrics.clone_mse
    penalty = 0.0 if threshold is None else clone_penalty(distance, threshold, config.clone_gamma)
    reason = sanity_failure(metrics.variable, metrics.level, forecast, metrics.pattern_r, config)
    if reason is None and math.isnan(metrics.skill):
        reason = f"{label}: skill score is NaN"
    if reason is None and math.isnan(metrics.acc):
        reason = f"{label}: ACC is NaN"
    return Day1VariableScore(
        variable=metrics.variable,
        level=metrics.level,
        lead_hours=metrics.lead_hours,
        status=Day1VariableStatus.SKIPPED if reason else Day1VariableStatus.SCORED,
        skill=metrics.skill - penalty,
        acc=metrics.acc,
        clone_distance=distance,
        clone_threshold=threshold,
        penalty=penalty,
        conversion=conversion.description if conversion else None,
        reason=reason,
    )


class Day1Status(Enum):
    SCORED = "scored"
    VERIFICATION_FAILED = "verification_failed"
    ERROR = "error"


@dataclass(frozen=True)
class Day1Result:
    """The day-1 outcome: a score (0.0 is a score), a verification failure, or an error."""

    status: Day1Status
    score: float | None
    """Day1; 0.0 on verification failure; None on error (never a silent number)."""
    passed: bool
    clamped: bool = False
    variables: tuple[Day1VariableScore, ...] = ()
    reason: str | None = None

    @classmethod
    def verification_failed(cls, reason: str) -> Day1Result:
        return cls(Day1Status.VERIFICATION_FAILED, 0.0, False, reason=reason)

    @classmethod
    def error(cls, reason: str) -> Day1Result:
        return cls(Day1Status.ERROR, None, False, reason=reason)


def _too_close(variable: Day1VariableScore, config: Day1Config) -> bool:
    threshold = variable.clone_threshold
    if variable.penalty > 0.0:
        return True
    if threshold is None:
        return False
    return variable.clone_distance < config.strict_distance_fraction * threshold


def combine(variables: Sequence[Day1VariableScore], config: Day1Config | None = None) -> Day1Result:
    """Day1 pooled over the scored variables (x leads), with the strict clamp and the pass flag.

    The clamp looks at every variable, skipped ones included: clone evidence counts regardless.
    """
    config = config or Day1Config()
    scored = [v for v in variables if v.scored]
    if scored:
        skill = math.fsum(max(0.0, v.skill) for v in scored) / len(scored)
        acc = math.fsum((v.acc + 1.0) / 2.0 for v in scored) / len(scored)
        score = config.skill_weight * skill + config.acc_weight * acc
    else:
        score = 0.0
    clamped = any(_too_close(v, config) for v in variables)
    if clamped:
        score = min(score, config.strict_cap)
    passed = score >= config.pass_threshold
    return Day1Result(Day1Status.SCORED, score, passed, clamped, tuple(variables))


def score_day1(
    fields: Sequence[FieldInputs], scorer: FieldScorer, config: Day1Config | None = None
) -> Day1Result:
    """The whole day-1 stage for one miner: convert units, score, check, combine.

    Any unexpected error becomes Day1Result.error with the error as the reason.
    """
    config = config or Day1Config()
    try:
        variables = []
        for inputs in fields:
            if inputs.reference is None:
                label = _label(inputs.variable, inputs.level)
                raise ValueError(f"day-1 field {label} has no reference forecast")
            converted, rule = convert_units(inputs, config)
            metrics = scorer.score(converted)
            variables.append(score_variable(metrics, converted.forecast, rule, config))
        return combine(variables, config)
    except Exception as error:  # recorded as a failure with its reason, never as a number
        return Day1Result.error(f"{type(error).__name__}: {error}")
