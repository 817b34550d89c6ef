"""Every threshold and weight of weather scoring, as frozen dataclasses with the spec's defaults.

Pure data, no heavy imports. Field keys are (variable short name, level in hPa or None).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gaia.tasks.weather.variables import (
    ALL_VARIABLES,
    ERA5_LEAD_HOURS,
    HALF_THICKNESS_HPA,
    G,
)

FieldKey = tuple[str, int | None]
"""(variable short name, pressure level in hPa or None for a surface variable)."""


@dataclass(frozen=True)
class MetricConfig:
    """Per-field metrics (spec section 2)."""

    anomaly_std_floor: float = 1e-12
    """ACC is NaN when the unweighted std of either anomaly field is below this."""
    constant_relative_spread: float = 1e-12
    """A correlation is NaN when a field's weighted variance is at most this squared times its
    weighted mean square: the field is constant up to rounding, so r would be rounding noise."""


@dataclass(frozen=True)
class LevelConfig:
    """Aggregation of pressure levels into one variable score (spec section 2)."""

    half_thickness_hpa: dict[int, float] = field(default_factory=lambda: dict(HALF_THICKNESS_HPA))
    """Weights before normalisation; every listed level is required."""


@dataclass(frozen=True)
class UnitRule:
    """Convert a forecast whose mean is far below the truth's: value * scale + offset."""

    variables: tuple[str, ...]
    forecast_mean_below: float
    truth_mean_above: float
    scale: float = 1.0
    offset: float = 0.0
    description: str = ""


def _default_unit_rules() -> tuple[UnitRule, ...]:
    return (
        UnitRule(("z",), 1e4, 4e4, scale=G, description="geopotential height (m) -> m2 s-2"),
        UnitRule(("2t", "t"), 100.0, 200.0, offset=273.15, description="degC -> K"),
        UnitRule(("msl",), 2000.0, 5e4, scale=100.0, description="hPa -> Pa"),
    )


@dataclass(frozen=True)
class Day1Config:
    """Day-1 checks and score (spec section 3)."""

    clone_thresholds: dict[FieldKey, float] = field(
        default_factory=lambda: {
            ("2t", None): 0.0025,
            ("msl", None): 400.0,
            ("10u", None): 0.01,
            ("10v", None): 0.01,
            ("z", 500): 100.0,
        }
    )
    """Clone distance thresholds Delta, in squared units of each variable."""
    clone_gamma: float = 1.0
    """Penalty P = gamma * max(0, 1 - D / Delta) when D < Delta."""
    bounds: dict[FieldKey, tuple[float, float]] = field(
        default_factory=lambda: {
            ("2t", None): (180.0, 340.0),
            ("msl", None): (90000.0, 110000.0),
            ("z", 500): (45000.0, 60000.0),
            ("t", 850): (220.0, 320.0),
        }
    )
    """Every finite forecast value must lie inside these bounds (inclusive)."""
    non_negative_variables: tuple[str, ...] = ("q",)
    min_pattern_r: float = 0.3
    """Pattern correlation r(forecast, reference) must be at least this."""
    unit_rules: tuple[UnitRule, ...] = field(default_factory=_default_unit_rules)
    skill_weight: float = 0.6
    acc_weight: float = 0.4
    strict_cap: float = 0.05
    """Day1 is capped at this when any variable is penalised or too close to the reference."""
    strict_distance_fraction: float = 0.5
    """The cap applies when D < this * Delta for any variable."""
    pass_threshold: float = 0.1
    """day1_pass = Day1 >= this."""


@dataclass(frozen=True)
class Era5Config:
    """Per-lead ERA5 stage score (spec section 4)."""

    skill_weight: float = 0.6
    acc_weight: float = 0.3
    error_weight: float = 0.1
    fallback_skill_weight: float = 0.6
    fallback_acc_weight: float = 0.4
    """Weights used when the error term is missing."""
    required_variables: tuple[str, ...] = ALL_VARIABLES
    lead_hours: tuple[int, ...] = ERA5_LEAD_HOURS
    """ERA5_avg divides by len(lead_hours): leads not yet scored count 0."""


@dataclass(frozen=True)
class AggregateConfig:
    """Run and window aggregation (spec section 5)."""

    era5_weight: float = 0.95
    day1_weight: float = 0.05
    value_min: float = 0.0
    value_max: float = 1.1
    bonus: float = 0.05
    bonus_min_score: float = 0.7
    bonus_requires_score_above: float = 0.05
    """Some miner of the run must have scored above this for a bonus to be given."""
    bonus_max_ties: int = 2
    """The bonus is split between up to this many tied best miners; none beyond."""
    window_days: float = 15.0
