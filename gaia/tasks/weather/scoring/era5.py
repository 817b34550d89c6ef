"""ERA5 stage score of one miner (spec sections 4 and 5).

Per lead h, over the variables scored at that lead: s = mean clamp(SS, 0, 1), a = mean (ACC+1)/2,
e = mean 1 / (1 + RMSE / R) with R the upper median of the miner's own RMSEs at that lead, and
S_h = clamp(0.6 s + 0.3 a + 0.1 e, 0, 1) with the spec's fallbacks. ERA5_avg = sum S_h / 10.
A lead that lacks one of the required variables fails the miner's ERA5 aggregation, with reason.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum

from gaia.tasks.weather.scoring.config import Era5Config
from gaia.tasks.weather.scoring.levels import VariableScore


def _clamp(value: float, low: float = 0.0, high: float = 1.0) -> float:
    return min(high, max(low, value))


def _mean(values: Sequence[float]) -> float | None:
    return math.fsum(values) / len(values) if values else None


@dataclass(frozen=True)
class LeadScore:
    """S_h and its terms (None for a missing term) at one lead."""

    lead_hours: int
    value: float
    skill_term: float | None
    acc_term: float | None
    error_term: float | None
    error_scale: float | None
    """R: the upper median of the RMSEs of the scored variables."""
    scored_variables: tuple[str, ...]
    failed_variables: tuple[tuple[str, str], ...]
    """(variable, reason) of the variables left out because they failed."""


class Era5Status(Enum):
    SCORED = "scored"
    FAILED = "failed"


@dataclass(frozen=True)
class Era5Result:
    """The miner's ERA5 stage: average over the configured leads, or a failure with reason."""

    status: Era5Status
    average: float | None
    """ERA5_avg (leads not yet scored count 0); None when the aggregation failed."""
    leads: tuple[LeadScore, ...]
    reason: str | None = None

    @classmethod
    def failed(cls, reason: str, leads: Sequence[LeadScore] = ()) -> Era5Result:
        return cls(Era5Status.FAILED, None, tuple(leads), reason)


def upper_median(values: Sequence[float]) -> float:
    """sorted(values)[n // 2] (the upper of the two middle values for an even n)."""
    if not values:
        raise ValueError("upper median of no values")
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def _error_term(rmses: Sequence[float]) -> tuple[float | None, float | None]:
    """(e, R). With R = 0 a zero RMSE scores 1 and any other scores 0 (the limit of 1/(1+x/R))."""
    if not rmses:
        return None, None
    scale = upper_median(rmses)
    if scale == 0.0:
        terms = [1.0 if rmse == 0.0 else 0.0 for rmse in rmses]
    else:
        terms = [1.0 / (1.0 + rmse / scale) for rmse in rmses]
    return _mean(terms), scale


def combine_terms(
    skill: float | None, acc: float | None, error: float | None, config: Era5Config
) -> float:
    """S_h from its terms: all three; 0.6 s + 0.4 a without e; else the first present; else 0."""
    if skill is not None and acc is not None and error is not None:
        value = config.skill_weight * skill + config.acc_weight * acc + config.error_weight * error
    elif skill is not None and acc is not None:
        value = config.fallback_skill_weight * skill + config.fallback_acc_weight * acc
    else:
        present = [term for term in (skill, acc, error) if term is not None]
        value = present[0] if present else 0.0
    return _clamp(value)


def score_lead(
    lead_hours: int, variables: Sequence[VariableScore], config: Era5Config | None = None
) -> LeadScore:
    """S_h over the scored variables of one lead (failed ones are listed, not counted).

    Raises ValueError for a variable of another lead or a variable given twice.
    """
    config = config or Era5Config()
    names = [v.variable for v in variables]
    if len(set(names)) != len(names):
        raise ValueError(f"lead {lead_hours} h: a variable is given twice: {sorted(names)}")
    for v in variables:
        if v.lead_hours != lead_hours:
            raise ValueError(f"{v.variable} is for +{v.lead_hours}h, not +{lead_hours}h")
    scored = [v for v in variables if v.scored]
    failed = tuple((v.variable, v.reason or "failed") for v in variables if not v.scored)
    skill = _mean([_clamp(v.skill) if not math.isnan(v.skill) else 0.0 for v in scored])
    acc = _mean([(v.acc + 1.0) / 2.0 for v in scored])
    error, scale = _error_term([v.rmse for v in scored if math.isfinite(v.rmse)])
    return LeadScore(
        lead_hours=lead_hours,
        value=combine_terms(skill, acc, error, config),
        skill_term=skill,
        acc_term=acc,
        error_term=error,
        error_scale=scale,
        scored_variables=tuple(v.variable for v in scored),
        failed_variables=failed,
    )


def score_era5(
    leads: Mapping[int, Sequence[VariableScore]], config: Era5Config | None = None
) -> Era5Result:
    """The miner's ERA5 result over the leads scored so far.

    A lead lacking a required variable fails the aggregation (status FAILED, reason naming the
    lead and the variables). A lead outside the configured leads is a caller error (ValueError).
    """
    config = config or Era5Config()
    unknown = sorted(set(leads) - set(config.lead_hours))
    if unknown:
        raise ValueError(f"leads {unknown} h are not ERA5 leads {list(config.lead_hours)}")
    lead_scores: list[LeadScore] = []
    for lead_hours in sorted(leads):
        variables = leads[lead_hours]
        present = {v.variable for v in variables}
        missing = [name for name in config.required_variables if name not in present]
        if missing:
            reason = f"lead {lead_hours} h lacks variables {missing}"
            return Era5Result.failed(reason, lead_scores)
        lead_scores.append(score_lead(lead_hours, variables, config))
    average = math.fsum(s.value for s in lead_scores) / len(config.lead_hours)
    return Era5Result(Era5Status.SCORED, average, tuple(lead_scores))
