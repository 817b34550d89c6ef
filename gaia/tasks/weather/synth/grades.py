"""Miner grades of a synthetic run and how each grade's forecast departs from the truth.

A forecast is truth + error, in units of the variable's anomaly standard deviation `amplitude`
(relative, and applied multiplicatively, for q so it stays >= 0):

    error = amplitude * (scale * growth(lead) * smooth random pattern    (changes with the weather)
                         + noise * white noise                            (grid-scale, every lead)
                         + offset                                         (a constant)
                         + systematic * drift(lead) * fixed pattern)      (see synth.systematic)
            - damping * true anomaly                                      (an underactive model)

The scorer bias-corrects each field by its mean and ACC is a centred correlation, so a constant
offset costs nothing; what ranks the grades is the error left after that correction, as a
fraction of the anomaly variance (SS = 1 - that fraction against climatology):

- skilful: a small smooth error only (<= 0.2 of the anomaly variance at 240 h);
- noisy: a moderate smooth error plus white noise (about 0.3-0.4 of it, averaged over leads);
- biased: a fixed large-scale pattern (a latitude-dependent bias plus misplaced stationary waves,
  0.45-0.6 sigma at day 1 growing to 0.9-1.1 sigma by 240 h as the model drifts to its own
  climate), 25-35 % of the anomaly missing, and an offset: about 0.7-0.85 of the anomaly
  variance on average and more than all of it by 240 h, so skill vanishes at the longer leads;
  the damping lowers ACC as well.

With the spec's weights this puts every skilful miner above every noisy one and every noisy one
above every biased one by a wide margin at any seed (tests/weather/test_synth_grades_order.py).
The reference (GFS-like) forecast and the analysis use the smooth error only. The first eight
miners show one defect each; further miners cycle skilful / noisy / biased with different
magnitudes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum

import numpy as np

from gaia.tasks.weather.synth.atmosphere import MODELS, Atmosphere, hours_since_epoch
from gaia.tasks.weather.synth.modes import ModeSet
from gaia.tasks.weather.synth.systematic import systematic_modes
from gaia.tasks.weather.variables import ALL_VARIABLES, PRESSURE_VARIABLES, G

_VARIABLE_INDEX = {name: index for index, name in enumerate(ALL_VARIABLES)}


class Grade(Enum):
    SKILFUL = "skilful"
    NOISY = "noisy"
    BIASED = "biased"
    CLONE = "clone"
    WRONG_UNITS = "wrong_units"
    NAN_BORDER = "nan_border"
    CORRUPTED_CHUNK = "corrupted_chunk"
    MISSING_VARIABLE = "missing_variable"


@dataclass(frozen=True)
class ForecastRecipe:
    """How far a forecast departs from the truth (multiples of the anomaly std)."""

    error_scale: float
    """Smooth random error (changing with the weather) at 240 h; a quarter of it at 0 h."""
    noise_scale: float = 0.0
    """Grid-scale white noise, the same at every lead."""
    offset_sigmas: float = 0.0
    """A constant offset (the scorer's bias correction removes it)."""
    systematic_sigmas: float = 0.0
    """A fixed large-scale error pattern (unit spread) at 240 h; half of it at 0 h."""
    anomaly_damping: float = 0.0
    """The fraction of the true anomaly the forecast misses (an underactive model)."""


REFERENCE_RECIPE = ForecastRecipe(error_scale=0.35)
ANALYSIS_RECIPE = ForecastRecipe(error_scale=0.05)
REFERENCE_KEY = -1
ANALYSIS_KEY = -2


@dataclass(frozen=True)
class MinerPlan:
    uid: int
    hotkey: str
    grade: Grade
    recipe: ForecastRecipe
    era5_conventions: bool = False
    """Write latitude/longitude names, ascending latitude and longitudes in -180..180."""
    missing_variables: tuple[str, ...] = ()


_DEFECTS: tuple[tuple[Grade, ForecastRecipe], ...] = (
    (Grade.SKILFUL, ForecastRecipe(0.20)),
    (Grade.NOISY, ForecastRecipe(0.60, noise_scale=0.35)),
    (Grade.BIASED, ForecastRecipe(
        0.25, offset_sigmas=0.5, systematic_sigmas=1.0, anomaly_damping=0.30)),
    (Grade.CLONE, ForecastRecipe(0.0)),
    (Grade.WRONG_UNITS, ForecastRecipe(0.20)),
    (Grade.NAN_BORDER, ForecastRecipe(0.20)),
    (Grade.CORRUPTED_CHUNK, ForecastRecipe(0.20)),
    (Grade.MISSING_VARIABLE, ForecastRecipe(0.20)),
)
_CYCLE: tuple[tuple[Grade, ForecastRecipe], ...] = (
    (Grade.SKILFUL, ForecastRecipe(0.30)),
    (Grade.NOISY, ForecastRecipe(0.55, noise_scale=0.40)),
    (Grade.BIASED, ForecastRecipe(
        0.30, offset_sigmas=-1.0, systematic_sigmas=0.9, anomaly_damping=0.35)),
    (Grade.SKILFUL, ForecastRecipe(0.12)),
    (Grade.NOISY, ForecastRecipe(0.70, noise_scale=0.40)),
    (Grade.BIASED, ForecastRecipe(
        0.20, offset_sigmas=0.25, systematic_sigmas=1.1, anomaly_damping=0.25)),
    (Grade.SKILFUL, ForecastRecipe(0.45)),
    (Grade.NOISY, ForecastRecipe(0.45, noise_scale=0.50)),
)
MISSING_VARIABLE = "10v"


def plan_miners(count: int) -> list[MinerPlan]:
    """The first `count` miners: the eight defect grades, then the skilful/noisy/biased cycle."""
    plans: list[MinerPlan] = []
    for uid in range(count):
        if uid < len(_DEFECTS):
            grade, recipe = _DEFECTS[uid]
        else:
            grade, recipe = _CYCLE[(uid - len(_DEFECTS)) % len(_CYCLE)]
        plans.append(
            MinerPlan(
                uid=uid,
                hotkey=f"miner-{uid:02d}-{grade.value.replace('_', '-')}",
                grade=grade,
                recipe=recipe,
                era5_conventions=uid == len(_DEFECTS),
                missing_variables=(MISSING_VARIABLE,) if grade is Grade.MISSING_VARIABLE else (),
            )
        )
    return plans


CLONE_NOISE: dict[str, float] = {"2t": 0.01, "msl": 4.0, "10u": 0.02, "10v": 0.02, "z": 2.0}
"""Clone perturbation std: 0.2 * sqrt(day-1 clone threshold), far below the threshold."""
CLONE_RELATIVE_NOISE = 1e-4


_BANK_PLANES = 3


def growth(lead_hours: int) -> float:
    """Forecast error growth with lead: 0.25 at analysis time, 1.0 at 240 h."""
    return 0.25 + 0.75 * min(max(lead_hours, 0), 240) / 240.0


def drift(lead_hours: int) -> float:
    """Systematic error growth as the model drifts to its own climate: 0.5 at 0 h, 1.0 at 240 h."""
    return 0.5 + 0.5 * min(max(lead_hours, 0), 240) / 240.0


class ErrorModel:
    """Deterministic forecast errors of one run, keyed by (miner key, variable)."""

    def __init__(self, seed: int, atmosphere: Atmosphere) -> None:
        self.seed = seed
        self.atmosphere = atmosphere
        self._modes: dict[tuple[int, str], ModeSet] = {}
        self._bank: np.ndarray | None = None
        self._systematic_modes: dict[tuple[int, str], ModeSet] = {}

    def _pattern(self, key: int, variable: str, hours: float) -> np.ndarray:
        modes = self._modes.get((key, variable))
        if modes is None:
            count = len(self.atmosphere.levels) if variable in PRESSURE_VARIABLES else 1
            rng = np.random.default_rng([self.seed, 4, key + 1000, _VARIABLE_INDEX[variable]])
            modes = ModeSet.random(rng, levels=count, m_max=8, n_max=10, period_hours=72.0)
            self._modes[(key, variable)] = modes
        return self.atmosphere.basis.evaluate(modes, hours, dtype=np.float32)

    def _systematic(self, key: int, variable: str) -> np.ndarray:
        """The miner's fixed large-scale error pattern of one variable (levels, lat, lon)."""
        modes = self._systematic_modes.get((key, variable))
        if modes is None:
            count = len(self.atmosphere.levels) if variable in PRESSURE_VARIABLES else 1
            rng = np.random.default_rng([self.seed, 7, key + 1000, _VARIABLE_INDEX[variable]])
            modes = systematic_modes(rng, count)
            self._systematic_modes[(key, variable)] = modes
        return self.atmosphere.basis.evaluate(modes, 0.0, dtype=np.float32)

    def _white(self, key: int, variable: str, step: int, shape: tuple[int, ...]) -> np.ndarray:
        """White noise (levels, lat, lon): windows cut from a bank drawn once per run.

        Drawing fresh normals for every field dominated generation time; a window at a random
        longitude offset of one of a few wide noise planes is just as white and nearly free.
        """
        levels, n_lat, n_lon = shape
        if self._bank is None or self._bank.shape[1:] != (n_lat, 2 * n_lon):
            bank_rng = np.random.default_rng([self.seed, 5])
            self._bank = bank_rng.standard_normal((_BANK_PLANES, n_lat, 2 * n_lon), np.float32)
        rng = np.random.default_rng([self.seed, 6, key + 1000, _VARIABLE_INDEX[variable], step])
        planes = rng.integers(0, _BANK_PLANES, size=levels)
        offsets = rng.integers(0, n_lon, size=levels)
        return np.stack(
            [self._bank[p, :, o : o + n_lon] for p, o in zip(planes, offsets, strict=True)]
        )

    def perturb(
        self,
        key: int,
        recipe: ForecastRecipe,
        variable: str,
        truth: np.ndarray,
        valid: datetime,
        lead_hours: int,
        step: int,
    ) -> np.ndarray:
        """truth + error for one (levels, lat, lon) stack, in float32."""
        column = self.atmosphere.column(variable, valid)
        amplitude = np.asarray(MODELS[variable].anomaly(column), dtype=np.float32)
        if recipe.error_scale:
            pattern = self._pattern(key, variable, hours_since_epoch(valid))
            scale = amplitude * np.float32(recipe.error_scale * growth(lead_hours))
            error: np.ndarray = pattern * scale
        else:
            error = np.zeros(truth.shape, dtype=np.float32)
        if recipe.noise_scale:
            white = self._white(key, variable, step, truth.shape)
            error += white * (amplitude * np.float32(recipe.noise_scale))
        if recipe.offset_sigmas:
            error += amplitude * np.float32(recipe.offset_sigmas)
        if recipe.systematic_sigmas:
            weight = np.float32(recipe.systematic_sigmas * drift(lead_hours))
            error += self._systematic(key, variable) * (amplitude * weight)
        if recipe.anomaly_damping:
            anomaly = self.atmosphere.anomaly(variable, valid).astype(np.float32)
            error -= anomaly * np.float32(recipe.anomaly_damping)
        if variable == "q":
            return np.asarray(truth.astype(np.float32) * np.exp(np.clip(error, -3.0, 3.0)))
        return np.asarray(truth.astype(np.float32) + error)

    def clone(self, key: int, variable: str, reference: np.ndarray, step: int) -> np.ndarray:
        """The reference plus a tiny perturbation (well inside the clone thresholds)."""
        white = self._white(key, variable, step, reference.shape)
        if variable in CLONE_NOISE:
            return reference + np.float32(CLONE_NOISE[variable]) * white
        return np.asarray(reference * (1.0 + np.float32(CLONE_RELATIVE_NOISE) * white))


WRONG_UNITS: dict[str, tuple[str, float, float]] = {
    "z": ("m", 1.0 / G, 0.0),
    "2t": ("degC", 1.0, -273.15),
}
"""Variables a wrong-units miner writes in other units: (units, factor, offset)."""


def to_wrong_units(variable: str, field: np.ndarray) -> np.ndarray:
    units = WRONG_UNITS.get(variable)
    if units is None:
        return field
    return field * units[1] + units[2]
