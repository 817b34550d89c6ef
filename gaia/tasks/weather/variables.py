"""Weather variables, pressure levels and their fixed metadata (spec section 1 and 2).

Pure data: no I/O, no heavy imports. Every module of the weather domain takes its names from here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

G = 9.80665
"""Standard gravity (m s^-2): geopotential = height x G."""


class Kind(Enum):
    SURFACE = "surface"
    PRESSURE = "pressure"


@dataclass(frozen=True)
class Variable:
    name: str
    kind: Kind
    units: str
    long_name: str


VARIABLES: dict[str, Variable] = {
    "2t": Variable("2t", Kind.SURFACE, "K", "2 metre temperature"),
    "10u": Variable("10u", Kind.SURFACE, "m s-1", "10 metre U wind component"),
    "10v": Variable("10v", Kind.SURFACE, "m s-1", "10 metre V wind component"),
    "msl": Variable("msl", Kind.SURFACE, "Pa", "mean sea level pressure"),
    "t": Variable("t", Kind.PRESSURE, "K", "temperature"),
    "u": Variable("u", Kind.PRESSURE, "m s-1", "U wind component"),
    "v": Variable("v", Kind.PRESSURE, "m s-1", "V wind component"),
    "q": Variable("q", Kind.PRESSURE, "kg kg-1", "specific humidity"),
    "z": Variable("z", Kind.PRESSURE, "m2 s-2", "geopotential"),
}
SURFACE_VARIABLES: tuple[str, ...] = ("2t", "10u", "10v", "msl")
PRESSURE_VARIABLES: tuple[str, ...] = ("t", "u", "v", "q", "z")
ALL_VARIABLES: tuple[str, ...] = SURFACE_VARIABLES + PRESSURE_VARIABLES

LEVELS: tuple[int, ...] = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)
"""The 13 pressure levels (hPa)."""

HALF_THICKNESS_HPA: dict[int, float] = {
    50: 25.0, 100: 50.0, 150: 50.0, 200: 50.0, 250: 50.0, 300: 75.0, 400: 100.0,
    500: 100.0, 600: 100.0, 700: 125.0, 850: 112.5, 925: 75.0, 1000: 37.5,
}
"""Level weights before normalisation (they sum to 950 hPa)."""

FORECAST_STEPS: int = 40
STEP_HOURS: int = 6
"""A forecast is initialised at 00Z and has 40 steps every 6 h (+6 h ... +240 h)."""

DAY1_LEAD_HOURS: int = 12
DAY1_VARIABLES: tuple[tuple[str, int | None], ...] = (
    ("2t", None), ("msl", None), ("10u", None), ("10v", None), ("z", 500),
)
"""Day-1 stage: (variable, level) pairs scored at lead 12 h."""

ERA5_LEAD_HOURS: tuple[int, ...] = (24, 48, 72, 96, 120, 144, 168, 192, 216, 240)
ERA5_DELAY_HOURS: int = 5 * 24 + 6
"""An ERA5 lead is available once now >= init + lead + 5 days + 6 h."""
