"""Fixed large-scale error patterns: the systematic error of a biased forecast model.

A model with a systematic error carries the same large-scale departure from the truth run after
run: a latitude-dependent warm or cold belt, subtropical highs too strong or too weak, a jet too
far poleward, stationary waves in the wrong place. Such an error is not a constant, so the
scorer's bias correction (one mean per field) cannot remove it; it costs skill and ACC.

The pattern of one (model, variable) is drawn once from a few low-order modes (zonal wavenumber
<= 3, degree <= 4) with no drift or oscillation, so it is the same at every time. Its zonal-mean
part (the latitude-dependent bias) and its wave part are each scaled to unit area-weighted
standard deviation on every level, then mixed so that `ZONAL_SHARE` of the variance is zonal:
the pattern has unit spread (its mean is a free offset). The weights are folded into the mode
coefficients and the spreads are measured on a fixed Gauss-Legendre grid, so the pattern is
grid-independent: the same seed gives the same pattern (sampled) at every resolution, and
nothing grid-sized is kept.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from gaia.tasks.weather.synth.modes import ModeSet, SphereBasis

ZONAL_SHARE = 0.6
"""Fraction of the pattern's variance in its zonal mean (latitude-dependent bias)."""
_M_MAX = 3
_N_MAX = 4
_QUADRATURE_LATS = 48
_QUADRATURE_LONS = 16


def _quadrature_basis() -> tuple[SphereBasis, np.ndarray]:
    """A Gauss-Legendre grid (exact area weights for these low-order modes) and its weights."""
    x, weights = np.polynomial.legendre.leggauss(_QUADRATURE_LATS)
    lat = np.rad2deg(np.arcsin(x))
    lon = np.arange(_QUADRATURE_LONS) * 360.0 / _QUADRATURE_LONS
    return SphereBasis(lat, lon, m_max=_M_MAX, n_max=_N_MAX), weights / weights.sum()


def _spread(basis: SphereBasis, weights: np.ndarray, modes: ModeSet) -> np.ndarray:
    """Area-weighted standard deviation of each level of `modes` at time 0: (levels, 1, 1)."""
    field = basis.evaluate(modes, 0.0)
    mean = np.einsum("j,kji->k", weights, field) / field.shape[2]
    square = np.einsum("j,kji->k", weights, field**2) / field.shape[2]
    return np.asarray(np.sqrt(np.maximum(square - mean**2, 1e-30)))[:, None, None]


def systematic_modes(rng: np.random.Generator, levels: int) -> ModeSet:
    """A fixed (time-independent) unit-spread large-scale pattern for `levels` levels."""
    modes = ModeSet.random(rng, levels=levels, m_max=_M_MAX, n_max=_N_MAX, vertical_coherence=0.9)
    zonal_a = np.zeros_like(modes.a)
    zonal_a[:, 0, :] = modes.a[:, 0, :]
    waves_a = modes.a - zonal_a
    still = dataclasses.replace(
        modes,
        b=np.zeros_like(modes.b),
        drift=np.zeros_like(modes.drift),
        oscillation=np.zeros_like(modes.oscillation),
    )
    zonal = dataclasses.replace(still, a=zonal_a)
    waves = dataclasses.replace(still, a=waves_a)
    quadrature, weights = _quadrature_basis()
    zonal_weight = np.sqrt(ZONAL_SHARE) / _spread(quadrature, weights, zonal)
    waves_weight = np.sqrt(1.0 - ZONAL_SHARE) / _spread(quadrature, weights, waves)
    return dataclasses.replace(still, a=zonal_weight * zonal_a + waves_weight * waves_a)
