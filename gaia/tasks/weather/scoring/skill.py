"""Scalar rules shared by every scorer: the skill score's edge cases and correlation clipping."""

from __future__ import annotations

import math


def skill_score(mse: float, mse_reference: float) -> float:
    """SS = 1 - mse / mse_reference (spec section 2).

    Non-finite MSE -> NaN; mse_reference == 0 -> 1 if mse == 0 else -inf.
    """
    if not (math.isfinite(mse) and math.isfinite(mse_reference)):
        return math.nan
    if mse_reference == 0.0:
        return 1.0 if mse == 0.0 else -math.inf
    return 1.0 - mse / mse_reference


def correlation(
    covariance: float,
    variance_a: float,
    variance_b: float,
    mean_square_a: float,
    mean_square_b: float,
    constant_relative_spread: float,
) -> float:
    """cov / sqrt(var_a * var_b) clipped to [-1, 1].

    NaN when either field is constant up to rounding: its variance is not above
    constant_relative_spread^2 times its mean square (0 counts as constant).
    """
    threshold = constant_relative_spread**2
    for variance, mean_square in ((variance_a, mean_square_a), (variance_b, mean_square_b)):
        if not variance > threshold * mean_square or not variance > 0.0:
            return math.nan
    if not math.isfinite(covariance):
        return math.nan
    r = covariance / (math.sqrt(variance_a) * math.sqrt(variance_b))
    return min(1.0, max(-1.0, r))
