"""The interface between weather data loading and weather scoring.

`FieldInputs` is one variable at one level and one lead, already aligned onto the truth grid by the
data side; `FieldMetrics` holds every per-field number of spec section 2 (plus the day-1 extras);
a `FieldScorer` turns the first into the second. numpy is imported for type checking only, so this
module stays cheap to import.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    import numpy as np


@dataclass(frozen=True)
class FieldInputs:
    """One variable, one level, one lead, all arrays on the truth grid (NaN = missing)."""

    variable: str
    level: int | None
    lead_hours: int
    forecast: np.ndarray
    truth: np.ndarray
    climatology: np.ndarray
    reference: np.ndarray | None
    lat: np.ndarray

    def __post_init__(self) -> None:
        where = f"{self.variable}@{self.level} +{self.lead_hours}h"
        if self.forecast.ndim != 2:
            raise ValueError(f"{where}: forecast must be 2-D (lat, lon), got {self.forecast.shape}")
        arrays = {"truth": self.truth, "climatology": self.climatology}
        if self.reference is not None:
            arrays["reference"] = self.reference
        for name, array in arrays.items():
            if array.shape != self.forecast.shape:
                raise ValueError(
                    f"{where}: {name} shape {array.shape} != forecast shape {self.forecast.shape}"
                )
        if self.lat.shape != (self.forecast.shape[0],):
            raise ValueError(
                f"{where}: lat must be 1-D of length {self.forecast.shape[0]}, got {self.lat.shape}"
            )


@dataclass(frozen=True)
class FieldMetrics:
    """Every per-field number of spec section 2 (latitude-weighted unless said otherwise)."""

    variable: str
    level: int | None
    lead_hours: int
    mse: float
    """MSE(f_bc, o) of the bias-corrected forecast."""
    rmse: float
    """sqrt(mse)."""
    mse_raw: float
    """MSE(f, o) of the raw forecast."""
    mse_reference: float
    """MSE(ref, o), ref = reference if given, else climatology."""
    skill: float
    """SS = 1 - mse / mse_reference with the spec's edge rules."""
    acc: float
    """r(f - c, o - c) on the raw forecast; NaN when an anomaly's std is below 1e-12."""
    bias: float
    """Unweighted mean(f - o) (diagnostic; also the bias correction)."""
    mae_weighted: float
    """Latitude-weighted mean |f - o| (diagnostic)."""
    bias_weighted: float
    """Latitude-weighted mean(f - o) (diagnostic)."""
    clone_mse: float | None
    """MSE(f, reference) of the raw forecast; None without a reference (ERA5 stage)."""
    pattern_r: float | None
    """r(f, reference) of the raw forecast; None without a reference."""
    valid_points: int
    """Points where forecast and truth are both finite."""


class FieldScorer(Protocol):
    """Anything that scores one field."""

    def score(self, inputs: FieldInputs) -> FieldMetrics: ...
