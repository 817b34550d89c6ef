"""One variable's score at one lead from its per-level field metrics (spec section 2).

RMSE = sqrt(sum w_l MSE_l) over the bias-corrected MSEs; ACC = sum w_l ACC_l, and any NaN level
fails the variable at that lead; SS = sum w_l SS_l with NaN counted as 0. A surface variable is a
single field with weight 1.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from gaia.tasks.weather.fields import FieldMetrics
from gaia.tasks.weather.scoring.config import LevelConfig
from gaia.tasks.weather.scoring.weights import level_weights


class VariableStatus(Enum):
    SCORED = "scored"
    FAILED = "failed"


@dataclass(frozen=True)
class VariableScore:
    """A variable at one lead. A FAILED variable keeps its numbers for diagnosis only."""

    variable: str
    lead_hours: int
    rmse: float
    acc: float
    skill: float
    status: VariableStatus
    reason: str | None = None
    levels: tuple[int | None, ...] = ()

    @property
    def scored(self) -> bool:
        return self.status is VariableStatus.SCORED


def _checked_levels(fields: Sequence[FieldMetrics]) -> tuple[str, int, list[int | None]]:
    if not fields:
        raise ValueError("no field metrics to aggregate")
    variable, lead = fields[0].variable, fields[0].lead_hours
    for metrics in fields:
        if (metrics.variable, metrics.lead_hours) != (variable, lead):
            raise ValueError(
                f"cannot aggregate {metrics.variable} +{metrics.lead_hours}h "
                f"with {variable} +{lead}h"
            )
    levels = [metrics.level for metrics in fields]
    if len(set(levels)) != len(levels):
        raise ValueError(f"{variable} +{lead}h: duplicate levels {levels}")
    if None in levels and len(levels) > 1:
        raise ValueError(f"{variable} +{lead}h: a surface field mixed with levels {levels}")
    return variable, lead, levels


def aggregate_levels(
    fields: Sequence[FieldMetrics], config: LevelConfig | None = None
) -> VariableScore:
    """Combine the fields of one variable at one lead (one field per level, or one surface field).

    A pressure-level variable needs every level of the config's table; a missing level fails
    the variable (with the reason). Mixed variables or leads, duplicate levels or an unknown
    level are caller errors (ValueError).
    """
    config = config or LevelConfig()
    variable, lead, levels = _checked_levels(fields)
    if levels == [None]:
        weights: dict[int | None, float] = {None: 1.0}
    else:
        pressure_levels = [level for level in levels if level is not None]
        weights = {level: w for level, w in level_weights(pressure_levels, config).items()}
        missing = sorted(set(config.half_thickness_hpa) - set(pressure_levels))
        if missing:
            nan = math.nan
            failed = VariableStatus.FAILED
            why = f"missing levels {missing} hPa"
            return VariableScore(variable, lead, nan, nan, nan, failed, why, tuple(levels))

    ordered = sorted(fields, key=lambda m: -1 if m.level is None else m.level)
    rmse = math.sqrt(math.fsum(weights[m.level] * m.mse for m in ordered))
    acc = math.fsum(weights[m.level] * m.acc for m in ordered)
    skill = math.fsum(weights[m.level] * (0.0 if math.isnan(m.skill) else m.skill) for m in ordered)
    level_order = tuple(m.level for m in ordered)

    reason: str | None = None
    nan_acc_levels = [m.level for m in ordered if math.isnan(m.acc)]
    if nan_acc_levels:
        where = "surface" if nan_acc_levels == [None] else f"levels {nan_acc_levels} hPa"
        reason = f"ACC is NaN at {where}"
    elif not math.isfinite(rmse):
        reason = f"RMSE is not finite ({rmse})"
    status = VariableStatus.FAILED if reason else VariableStatus.SCORED
    return VariableScore(variable, lead, rmse, acc, skill, status, reason, level_order)


def aggregate_variables(
    fields: Sequence[FieldMetrics], config: LevelConfig | None = None
) -> list[VariableScore]:
    """aggregate_levels for every variable of one lead, in order of first appearance."""
    by_variable: dict[str, list[FieldMetrics]] = {}
    for metrics in fields:
        by_variable.setdefault(metrics.variable, []).append(metrics)
    return [aggregate_levels(group, config) for group in by_variable.values()]
