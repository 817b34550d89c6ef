"""Shared pieces of the results-store tests (imported by the other test_results_* files).

The ``results_url`` fixture is parametrised over a real SQLite file in tmp_path and a fresh
database on the real PostgreSQL of ``tests/servers``; ``dump`` reads every table of either
straight from the database, independently of the store; the builders make scoring results with
the scoring code itself, including NaN, +-inf and -0.0 values.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sqlite3
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from enum import Enum
from pathlib import Path

import pytest

from gaia.tasks.weather.fields import FieldMetrics
from gaia.tasks.weather.results import ResultsStore, open_results
from gaia.tasks.weather.scoring.day1 import (
    Day1Result,
    Day1VariableScore,
    Day1VariableStatus,
    combine,
)
from gaia.tasks.weather.scoring.era5 import Era5Result, score_era5
from gaia.tasks.weather.scoring.levels import VariableScore, aggregate_variables
from gaia.tasks.weather.variables import ALL_VARIABLES, LEVELS, PRESSURE_VARIABLES

INIT = datetime(2024, 5, 1, tzinfo=UTC)
BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)]


@pytest.fixture(params=BACKENDS)
def results_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A results URL of each backend: a new SQLite file, or a new PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/results/scores.db"
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def store(results_url: str) -> AsyncIterator[ResultsStore]:
    async with await open_results(results_url) as opened:
        yield opened


# ---- comparing ----------------------------------------------------------------------------------

def _plain(value: object) -> object:
    """A comparable form: floats by repr (NaN equals NaN, -0.0 differs from 0.0)."""
    if isinstance(value, float):
        return ("float", repr(value))
    if isinstance(value, Enum):
        return (type(value).__name__, value.value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        fields = dataclasses.fields(value)
        return (type(value).__name__, tuple(_plain(getattr(value, f.name)) for f in fields))
    if isinstance(value, Mapping):
        return ("map", tuple(sorted(((_plain(k), _plain(v)) for k, v in value.items()), key=repr)))
    if isinstance(value, list | tuple):
        return (type(value).__name__, tuple(_plain(item) for item in value))
    if isinstance(value, set | frozenset):
        return ("set", tuple(sorted((_plain(item) for item in value), key=repr)))
    return value


def same(a: object, b: object) -> bool:
    """Exact equality where NaN equals NaN and the sign of a zero counts."""
    return _plain(a) == _plain(b)


# ---- raw table dumps ----------------------------------------------------------------------------

def _normal(value: object) -> object:
    return repr(value) if isinstance(value, float) else value


async def dump(url: str) -> dict[str, list[tuple[object, ...]]]:
    """Every row of every table, read directly from the database (sorted, floats by repr)."""
    if url.startswith("sqlite"):
        return await asyncio.to_thread(_dump_sqlite, Path(url.removeprefix("sqlite:///")))
    import asyncpg

    connection = await asyncpg.connect(url)
    try:
        names = [row[0] for row in await connection.fetch(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = "
            "'gaia_results' ORDER BY table_name")]
        tables = {}
        for name in names:
            rows = await connection.fetch(f"SELECT * FROM gaia_results.{name}")
            tables[name] = sorted(tuple(_normal(v) for v in row) for row in rows)
        return tables
    finally:
        await connection.close()


def _dump_sqlite(path: Path) -> dict[str, list[tuple[object, ...]]]:
    connection = sqlite3.connect(path)
    try:
        names = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {
            name: sorted(
                (tuple(_normal(v) for v in row)
                 for row in connection.execute(f"SELECT * FROM {name}")), key=repr)
            for name in names
        }
    finally:
        connection.close()


# ---- scoring results to store -------------------------------------------------------------------

def field(
    variable: str, level: int | None, lead: int, quality: float = 1.0, *, reference: bool = False
) -> FieldMetrics:
    """Plausible metrics of one field; ``quality`` scales the error (larger is worse)."""
    scale = 1.0 + (level or 0) / 1000.0
    mse = 0.25 * quality * scale
    return FieldMetrics(
        variable=variable, level=level, lead_hours=lead,
        mse=mse, rmse=math.sqrt(mse), mse_raw=mse * 1.1, mse_reference=1.0 * scale,
        skill=1.0 - mse / scale, acc=max(-1.0, 0.9 - 0.1 * quality), bias=0.01 * quality,
        mae_weighted=0.4 * quality, bias_weighted=-0.02 * quality,
        clone_mse=0.5 * quality if reference else None,
        pattern_r=0.95 if reference else None, valid_points=121 * 240,
    )


def lead_fields(lead: int, quality: float = 1.0) -> list[FieldMetrics]:
    """All 69 ERA5 fields of one lead (4 surface variables, 5 variables on 13 levels)."""
    return [
        field(name, level, lead, quality)
        for name in ALL_VARIABLES
        for level in (LEVELS if name in PRESSURE_VARIABLES else (None,))
    ]


def lead_variables(lead: int, quality: float = 1.0) -> list[VariableScore]:
    return aggregate_variables(lead_fields(lead, quality))


def era5_result(leads: Sequence[int], quality: float = 1.0) -> Era5Result:
    return score_era5({lead: lead_variables(lead, quality) for lead in leads})


def odd_fields(lead: int = 24) -> list[FieldMetrics]:
    """Fields holding every awkward float: NaN, +inf, -inf, -0.0, 0.0, tiny and huge."""
    base = field("q", 850, lead)
    return [
        dataclasses.replace(base, acc=math.nan, skill=-math.inf, mse_reference=0.0),
        dataclasses.replace(base, level=925, mse=math.inf, rmse=math.inf, bias=-0.0,
                            clone_mse=math.nan, pattern_r=-0.0),
        dataclasses.replace(base, level=1000, mse_raw=5e-324, mae_weighted=1.7976931348623157e308,
                            bias_weighted=-1e-300, skill=math.nan, acc=-1.0, valid_points=0),
        dataclasses.replace(base, variable="2t", level=None, clone_mse=0.0, pattern_r=math.inf),
    ]


def day1_variable(
    variable: str, level: int | None, skill: float, acc: float, distance: float,
    threshold: float | None, *, skipped: str | None = None, conversion: str | None = None,
) -> Day1VariableScore:
    return Day1VariableScore(
        variable=variable, level=level, lead_hours=12,
        status=Day1VariableStatus.SKIPPED if skipped else Day1VariableStatus.SCORED,
        skill=skill, acc=acc, clone_distance=distance, clone_threshold=threshold,
        penalty=0.0, conversion=conversion, reason=skipped,
    )


def day1_result(quality: float = 1.0) -> Day1Result:
    """A scored day-1 result of five variables, one skipped and one with NaN ACC."""
    return combine([
        day1_variable("2t", None, 0.8 / quality, 0.9, 4.0, 0.0025, conversion="+273.15 K"),
        day1_variable("msl", None, 0.7 / quality, 0.85, 9000.0, 400.0),
        day1_variable("10u", None, -math.inf, math.nan, 2.0, 0.01,
                      skipped="10u: ACC is NaN"),
        day1_variable("10v", None, 0.6 / quality, 0.8, 2.5, 0.01),
        day1_variable("z", 500, 0.75 / quality, -0.0, 5000.0, None),
    ])
