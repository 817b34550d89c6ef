"""A synthetic atmosphere with plausible magnitudes for every variable and level.

truth(v) = climate mean(dayofyear(v), hour(v)) + weather anomaly(v), with

- the mean: zonal structure (warm tropics, cold poles, temperature falling with height to a
  stratospheric floor, standard-atmosphere geopotential with warmer columns higher, subtropical
  highs and subpolar lows in msl, jets near 35 deg peaking at 200-250 hPa, trades at the surface,
  moist tropics with humidity falling steeply with height), a seasonal term from the solar
  declination, a diurnal cycle in 2t, and fixed stationary waves;
- the anomaly: a `ModeSet` per variable, coherent across levels, drifting and evolving in time, with
  amplitudes that grow toward the poles (temperature, pressure, geopotential) or aloft (wind,
  geopotential).

Humidity is multiplicative (mean * exp(anomaly)) so it stays positive. Everything is deterministic
for (seed, variable) and independent of the grid, so any resolution samples the same atmosphere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from gaia.tasks.weather.synth.modes import ModeSet, SphereBasis
from gaia.tasks.weather.variables import ALL_VARIABLES, PRESSURE_VARIABLES, G

EPOCH = datetime(2000, 1, 1, tzinfo=UTC)
_VARIABLE_INDEX = {name: index for index, name in enumerate(ALL_VARIABLES)}


def hours_since_epoch(when: datetime) -> float:
    return (when.astimezone(UTC) - EPOCH).total_seconds() / 3600.0


@dataclass(frozen=True)
class Column:
    """Broadcastable coordinates: levels (L,1,1) hPa or None, lat/lon (1,J,1)/(1,1,I) degrees."""

    p: np.ndarray
    lat: np.ndarray
    lon: np.ndarray
    doy: int
    hour: int

    @property
    def s(self) -> np.ndarray:
        return np.asarray(np.sin(np.deg2rad(self.lat)))

    @property
    def season(self) -> float:
        """Solar declination as a fraction of its maximum: +1 at the June solstice."""
        return float(np.sin(2 * np.pi * (self.doy - 81) / 365.25))


def _surface_temperature(c: Column) -> np.ndarray:
    s = c.s
    return 301.0 - 45.0 * s**2 + 10.0 * c.season * s


def _mean_2t(c: Column) -> np.ndarray:
    local = np.deg2rad(c.lon) + 2 * np.pi * (c.hour - 14.0) / 24.0
    diurnal = 4.0 * np.cos(local) * np.cos(np.deg2rad(c.lat))
    return np.asarray(_surface_temperature(c) - 1.0 + diurnal)


def _mean_t(c: Column) -> np.ndarray:
    troposphere = _surface_temperature(c) * (c.p / 1000.0) ** 0.19
    floor = 200.0 + 20.0 * c.s**2
    softness = 3.0
    return floor + softness * np.logaddexp(0.0, (troposphere - floor) / softness)


def _mean_z(c: Column) -> np.ndarray:
    standard_height = 44330.8 * (1.0 - (c.p / 1013.25) ** 0.190263)
    warmth = 1.0 + 0.7 * (_surface_temperature(c) - 288.0) / 288.0
    return G * standard_height * warmth


def _belt(lat: np.ndarray, centre: float, width: float) -> np.ndarray:
    return np.asarray(np.exp(-(((np.abs(lat) - centre) / width) ** 2)))


def _mean_msl(c: Column) -> np.ndarray:
    return 101325.0 + 800.0 * _belt(c.lat, 30.0, 10.0) - 1300.0 * _belt(c.lat, 60.0, 10.0)


def _surface_u(c: Column) -> np.ndarray:
    return -6.0 * np.exp(-((c.lat / 15.0) ** 2)) + 8.0 * _belt(c.lat, 50.0, 12.0)


def _mean_10u(c: Column) -> np.ndarray:
    return 0.8 * _surface_u(c)


def _mean_u(c: Column) -> np.ndarray:
    jet = 35.0 * np.exp(-((np.log(c.p / 225.0) / 0.8) ** 2))
    winter = 1.0 - 0.3 * c.season * np.sign(c.lat)
    return np.asarray(jet * _belt(c.lat, 35.0, 10.0) * winter + _surface_u(c) * (c.p / 1000.0) ** 3)


def _mean_v(c: Column) -> np.ndarray:
    hadley = -1.5 * np.sin(np.deg2rad(c.lat) * 6.0) * np.exp(-((c.lat / 30.0) ** 2))
    return np.asarray(hadley * ((c.p / 1000.0) ** 2 - 0.3))


def _mean_10v(c: Column) -> np.ndarray:
    return np.asarray(-1.5 * np.sin(np.deg2rad(c.lat) * 6.0) * np.exp(-((c.lat / 30.0) ** 2)))


def _mean_q(c: Column) -> np.ndarray:
    surface = 0.002 + 0.016 * np.exp(-(((c.lat - 5.0 * c.season) / 25.0) ** 2))
    return surface * (c.p / 1000.0) ** 3.5 + 2.5e-6


@dataclass(frozen=True)
class VariableModel:
    mean: Callable[[Column], np.ndarray]
    anomaly: Callable[[Column], np.ndarray]
    """Anomaly standard deviation (relative for q) as a function of the column."""
    stationary: float
    """Amplitude of the fixed stationary waves (relative for q)."""


def _polar(scale: float) -> Callable[[Column], np.ndarray]:
    return lambda c: scale * (0.4 + c.s**2)


def _aloft(surface: float, top: float) -> Callable[[Column], np.ndarray]:
    return lambda c: surface + (top - surface) * (1.0 - c.p / 1000.0) + 0.0 * c.lat


def _geopotential(surface: float, top: float) -> Callable[[Column], np.ndarray]:
    """Growing aloft and poleward: tropical height anomalies are weak (small Coriolis
    parameter), so the tropical z500 stays below ~5950 m; 1x the aloft profile at 45 deg."""
    aloft = _aloft(surface, top)
    return lambda c: aloft(c) * (0.3 + 1.4 * c.s**2)


MODELS: dict[str, VariableModel] = {
    "2t": VariableModel(_mean_2t, _polar(4.0), 3.0),
    "10u": VariableModel(_mean_10u, lambda c: 3.0 + 0.0 * c.lat, 2.0),
    "10v": VariableModel(_mean_10v, lambda c: 3.0 + 0.0 * c.lat, 2.0),
    "msl": VariableModel(_mean_msl, _polar(1200.0), 400.0),
    "t": VariableModel(_mean_t, _polar(3.0), 2.0),
    "u": VariableModel(_mean_u, _aloft(3.0, 9.0), 3.0),
    "v": VariableModel(_mean_v, _aloft(3.0, 8.0), 2.0),
    "q": VariableModel(_mean_q, lambda c: 0.25 + 0.0 * c.lat, 0.1),
    "z": VariableModel(_mean_z, _geopotential(G * 40.0, G * 160.0), G * 30.0),
}


def anomaly_scale(variable: str, level: int | None) -> float:
    """A representative anomaly standard deviation (mid-latitude) of one field."""
    p = np.full((1, 1, 1), float(level if level is not None else 1000))
    column = Column(p=p, lat=np.full((1, 1, 1), 45.0), lon=np.zeros((1, 1, 1)), doy=1, hour=0)
    return float(np.asarray(MODELS[variable].anomaly(column)).reshape(-1)[0])


class Atmosphere:
    """Truth and climatology of one seed, sampled on one grid."""

    def __init__(self, seed: int, basis: SphereBasis, levels: tuple[int, ...]) -> None:
        self.seed = seed
        self.basis = basis
        self.levels = levels
        self._anomaly_modes: dict[str, ModeSet] = {}
        self._stationary: dict[str, ModeSet] = {}
        for name in ALL_VARIABLES:
            count = len(levels) if name in PRESSURE_VARIABLES else 1
            rng = np.random.default_rng([seed, 1, _VARIABLE_INDEX[name]])
            self._anomaly_modes[name] = ModeSet.random(rng, levels=count, m_max=8, n_max=10)
            fixed = np.random.default_rng([seed, 2, _VARIABLE_INDEX[name]])
            stationary = ModeSet.random(fixed, levels=count, m_max=4, n_max=6)
            self._stationary[name] = stationary  # evaluated on demand: memory stays flat

    def column(self, variable: str, when: datetime) -> Column:
        lat = self.basis.lat[None, :, None]
        lon = self.basis.lon[None, None, :]
        if variable in PRESSURE_VARIABLES:
            p = np.asarray(self.levels, dtype=np.float64)[:, None, None]
        else:
            p = np.full((1, 1, 1), 1000.0)
        when = when.astimezone(UTC)
        return Column(p=p, lat=lat, lon=lon, doy=when.timetuple().tm_yday, hour=when.hour)

    def mean(self, variable: str, doy: int, hour: int) -> np.ndarray:
        """The climate mean for a (dayofyear, hour) slot: (levels, lat, lon) float64."""
        model = MODELS[variable]
        column = self.column(variable, datetime(2001, 1, 1, tzinfo=UTC))
        column = Column(p=column.p, lat=column.lat, lon=column.lon, doy=doy, hour=hour)
        base = np.broadcast_to(model.mean(column), (column.p.shape[0], *self.basis.shape))
        waves = self.basis.evaluate(self._stationary[variable], 0.0)
        if variable == "q":
            return base * np.exp(model.stationary * waves)
        return base + model.stationary * waves * (0.4 + column.s**2)

    def anomaly(self, variable: str, when: datetime) -> np.ndarray:
        """The weather anomaly at a valid time (relative for q): (levels, lat, lon)."""
        column = self.column(variable, when)
        pattern = self.basis.evaluate(self._anomaly_modes[variable], hours_since_epoch(when))
        return np.asarray(pattern * MODELS[variable].anomaly(column))

    def truth(self, variable: str, when: datetime) -> np.ndarray:
        """The true state at a valid time: (levels, lat, lon) float64."""
        when = when.astimezone(UTC)
        mean = self.mean(variable, when.timetuple().tm_yday, when.hour)
        anomaly = self.anomaly(variable, when)
        if variable == "q":
            return np.asarray(mean * np.exp(anomaly))
        return np.asarray(mean + anomaly)
