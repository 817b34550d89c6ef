"""Smooth global fields from a few spherical-harmonic-like modes.

A mode (m, n) is cos(lat)^m * P_n(sin lat) * exp(i m lon): zonal wavenumber m, Legendre degree n.
The cos^m factor makes every m > 0 mode vanish at the poles, so fields are smooth on the sphere.
Each basis function is normalised by its area-weighted RMS, computed on a fixed Gauss-Legendre
quadrature so the same coefficients give the same field (sampled) at every resolution. A `ModeSet`
evolves in time: each mode drifts eastward and its amplitude oscillates, so successive valid times
differ smoothly. Fields are evaluated for a stack of levels at once with one batched matmul.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_QUADRATURE_POINTS = 96


def _legendre(x: np.ndarray, n_max: int) -> np.ndarray:
    """P_0..P_n_max at x, shape (x.size, n_max + 1), by the three-term recurrence."""
    out = np.empty((x.size, n_max + 1))
    out[:, 0] = 1.0
    if n_max >= 1:
        out[:, 1] = x
    for n in range(1, n_max):
        out[:, n + 1] = ((2 * n + 1) * x * out[:, n] - n * out[:, n - 1]) / (n + 1)
    return out


def _profiles(sin_lat: np.ndarray, m_max: int, n_max: int) -> np.ndarray:
    """cos^m * P_n(sin lat), shape (m_max + 1, lat, n_max + 1)."""
    cos_lat = np.sqrt(np.clip(1.0 - sin_lat**2, 0.0, None))
    legendre = _legendre(sin_lat, n_max)
    return np.stack([cos_lat[:, None] ** m * legendre for m in range(m_max + 1)])


def _norms(m_max: int, n_max: int) -> np.ndarray:
    """Area-weighted RMS of each real mode on the sphere, shape (m_max + 1, n_max + 1)."""
    x, w = np.polynomial.legendre.leggauss(_QUADRATURE_POINTS)
    profiles = _profiles(x, m_max, n_max)
    mean_square = np.einsum("l,mln->mn", w, profiles**2) / 2.0
    mean_square[1:] *= 0.5  # <cos^2(m lon)> = 1/2 for m > 0
    return np.asarray(np.sqrt(mean_square))


@dataclass(frozen=True)
class ModeSet:
    """Complex coefficients a, b (levels, m, n) and drift/oscillation rates (rad per hour)."""

    a: np.ndarray
    b: np.ndarray
    drift: np.ndarray
    """(m,) eastward phase speed in rad/hour per unit of m."""
    oscillation: np.ndarray
    """(n,) angular frequency of the amplitude oscillation."""

    @property
    def m_max(self) -> int:
        return int(self.a.shape[1] - 1)

    @property
    def n_max(self) -> int:
        return int(self.a.shape[2] - 1)

    @classmethod
    def random(
        cls,
        rng: np.random.Generator,
        *,
        levels: int,
        m_max: int,
        n_max: int,
        vertical_coherence: float = 0.8,
        period_hours: float = 120.0,
        drift_deg_per_hour: float = 0.4,
    ) -> ModeSet:
        """Unit-variance random modes (red spectrum); levels share a coherent part."""
        shape = (m_max + 1, n_max + 1)
        m = np.arange(m_max + 1)[:, None]
        n = np.arange(n_max + 1)[None, :]
        spectrum = 1.0 / (1.0 + (m + n) / 3.0)
        spectrum[0, 0] = 0.0  # no global-mean offset in an anomaly
        spectrum = spectrum / np.sqrt(np.sum(spectrum**2))

        def draw() -> np.ndarray:
            shared = rng.standard_normal(shape) + 1j * rng.standard_normal(shape)
            own = rng.standard_normal((levels, *shape)) + 1j * rng.standard_normal((levels, *shape))
            mixed = vertical_coherence * shared[None] + np.sqrt(1 - vertical_coherence**2) * own
            return np.asarray(mixed * spectrum[None] / np.sqrt(2.0))

        a, b = draw(), draw()
        a[:, 0, :] = a[:, 0, :].real  # the m = 0 modes are real
        b[:, 0, :] = b[:, 0, :].real
        drift = np.deg2rad(drift_deg_per_hour) * (0.5 + rng.random(m_max + 1))
        oscillation = 2 * np.pi / period_hours * (0.5 + rng.random(n_max + 1))
        return cls(a=a, b=b, drift=drift, oscillation=oscillation)


class SphereBasis:
    """The mode functions sampled on one grid, for fast evaluation of any `ModeSet`."""

    def __init__(self, lat: np.ndarray, lon: np.ndarray, m_max: int = 8, n_max: int = 10) -> None:
        self.lat = np.asarray(lat, dtype=np.float64)
        self.lon = np.asarray(lon, dtype=np.float64)
        self.m_max = m_max
        self.n_max = n_max
        sin_lat = np.sin(np.deg2rad(self.lat))
        self._profiles = _profiles(sin_lat, m_max, n_max) / _norms(m_max, n_max)[:, None, :]
        angles = np.outer(np.arange(m_max + 1), np.deg2rad(self.lon))
        self._cos = np.ascontiguousarray(np.cos(angles))
        self._sin = np.ascontiguousarray(np.sin(angles))
        n_lon = self.lon.size
        regular = np.allclose(self.lon, np.arange(n_lon) * 360.0 / n_lon, rtol=0, atol=1e-9)
        self._fft = bool(regular and m_max < n_lon // 2)
        self._spectra: dict[tuple[int, str], np.ndarray] = {}
        """Reused FFT inputs: only the first m_max + 1 columns are ever non-zero."""

    @property
    def shape(self) -> tuple[int, int]:
        return (self.lat.size, self.lon.size)

    def evaluate(self, modes: ModeSet, hours: float, dtype: type = np.float64) -> np.ndarray:
        """The field of every level at `hours` (since any fixed epoch): (levels, lat, lon).

        `dtype=np.float32` evaluates the longitude synthesis in single precision (faster).
        """
        if modes.m_max > self.m_max or modes.n_max > self.n_max:
            raise ValueError("mode set is finer than the basis")
        m_count, n_count = modes.m_max + 1, modes.n_max + 1
        phase = np.exp(-1j * np.arange(m_count) * modes.drift * hours)
        swing = modes.oscillation * hours
        coefficients = (modes.a * np.cos(swing) + modes.b * np.sin(swing)) * phase[None, :, None]
        profiles = self._profiles[:m_count, :, :n_count]
        levels, n_lat = coefficients.shape[0], profiles.shape[1]
        per_m = np.einsum("mjn,kmn->kjm", profiles, coefficients, optimize=True)
        if self._fft:
            # On a regular longitude grid from 0, sum_m Re(p_m e^{i m lon}) is an inverse real FFT.
            n_lon = self.lon.size
            complex_type = np.complex64 if dtype == np.float32 else np.complex128
            key = (levels, np.dtype(complex_type).str)
            spectrum = self._spectra.get(key)
            if spectrum is None:
                spectrum = np.zeros((levels, n_lat, n_lon // 2 + 1), dtype=complex_type)
                self._spectra[key] = spectrum
            spectrum[:, :, 0] = n_lon * per_m[:, :, 0].real
            spectrum[:, :, 1:m_count] = 0.5 * n_lon * per_m[:, :, 1:]
            spectrum[:, :, m_count : self.m_max + 1] = 0.0
            return np.fft.irfft(spectrum, n=n_lon, axis=2)
        # Otherwise: sum_m Re(p_m) cos(m lon) - Im(p_m) sin(m lon), one real GEMM.
        left = np.concatenate([per_m.real, -per_m.imag], axis=2).reshape(levels * n_lat, -1)
        right = np.concatenate([self._cos[:m_count], self._sin[:m_count]], axis=0)
        return np.asarray((left @ right).reshape(levels, n_lat, -1).astype(dtype, copy=False))
