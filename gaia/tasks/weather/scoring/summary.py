"""FieldSummary: the scalar results a field scorer computes, and their conversion to FieldMetrics.

The skill score and RMSE are derived in one place (build_metrics) so every scorer applies the same
edge rules.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gaia.tasks.weather.fields import FieldInputs, FieldMetrics
from gaia.tasks.weather.scoring.skill import skill_score


@dataclass(frozen=True)
class FieldSummary:
    """Every independent per-field number; see FieldMetrics for their meaning."""

    valid_points: int
    bias: float
    mse_raw: float
    mse: float
    mse_reference: float
    mae_weighted: float
    bias_weighted: float
    acc: float
    clone_mse: float | None
    pattern_r: float | None


def build_metrics(inputs: FieldInputs, summary: FieldSummary) -> FieldMetrics:
    """FieldMetrics of one field: the summary plus RMSE and the skill score."""
    return FieldMetrics(
        variable=inputs.variable,
        level=inputs.level,
        lead_hours=inputs.lead_hours,
        mse=summary.mse,
        rmse=math.sqrt(summary.mse),
        mse_raw=summary.mse_raw,
        mse_reference=summary.mse_reference,
        skill=skill_score(summary.mse, summary.mse_reference),
        acc=summary.acc,
        bias=summary.bias,
        mae_weighted=summary.mae_weighted,
        bias_weighted=summary.bias_weighted,
        clone_mse=summary.clone_mse,
        pattern_r=summary.pattern_r,
        valid_points=summary.valid_points,
    )
