"""Scoring dataclasses to table rows and back, in the column order of ``schema``.

Encoding checks every value (a number must be a real number, an integer integral, a name
non-empty) and raises ValueError or TypeError naming the field; decoding checks every column and
raises ResultsError naming the table and the row's key. Lists are JSON text; nothing is pickled.
``scoring.day1`` is imported only when a day-1 result is decoded, so importing the store does not
pull numpy in.
"""

from __future__ import annotations

import json
import numbers
import operator
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

from gaia.tasks.weather.data.errors import CheckKind
from gaia.tasks.weather.fields import FieldMetrics
from gaia.tasks.weather.results.dialect import (
    BadColumn,
    Dialect,
    Row,
    SqlValue,
    read_flag,
    read_int,
    read_optional_real,
    read_optional_text,
    read_real,
    read_text,
)
from gaia.tasks.weather.results.records import (
    STAGES,
    FailureKind,
    ResultsError,
    StageFailure,
    StageName,
)
from gaia.tasks.weather.results.schema import SURFACE_LEVEL, Table
from gaia.tasks.weather.scoring.aggregate import OverallScore, RunValue
from gaia.tasks.weather.scoring.era5 import Era5Result, Era5Status, LeadScore
from gaia.tasks.weather.scoring.levels import VariableScore, VariableStatus

if TYPE_CHECKING:
    from gaia.tasks.weather.scoring.day1 import Day1Result, Day1VariableScore

_T = TypeVar("_T")
_E = TypeVar("_E")


# ---- checking what is saved -------------------------------------------------------------------

def number(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what} must be a real number, got {value!r}")
    return float(value)


def optional_number(value: object, what: str) -> float | None:
    return None if value is None else number(value, what)


def integer(value: object, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    try:
        result = operator.index(value)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{what} must be an integer, got {value!r}") from None
    if minimum is not None and result < minimum:
        raise ValueError(f"{what} must be >= {minimum}, got {result}")
    return result


def name(value: object, what: str) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    return value


def optional_text(value: object, what: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise TypeError(f"{what} must be a string or None, got {value!r}")
    return value


def stage_name(value: object) -> StageName:
    for stage in STAGES:
        if value == stage:
            return stage
    raise ValueError(f"stage must be one of {STAGES}, got {value!r}")


def level_code(level: object, what: str) -> int:
    """The stored level: SURFACE_LEVEL for None, else the positive pressure level."""
    if level is None:
        return SURFACE_LEVEL
    return integer(level, f"{what} level", minimum=SURFACE_LEVEL + 1)


def _level(code: SqlValue) -> int | None:
    value = read_int(code)
    return None if value == SURFACE_LEVEL else value


def _enum(kind: Callable[[str], _E], value: SqlValue) -> _E:
    text = read_text(value)
    try:
        return kind(text)
    except ValueError:
        raise BadColumn(f"unknown {getattr(kind, '__name__', 'value')} {text!r}") from None


@contextmanager
def decoding(table: Table, row: Row) -> Iterator[None]:
    """Turn any decoding problem into a ResultsError naming the table and the row's key."""
    try:
        yield
    except (BadColumn, ValueError, TypeError, KeyError, IndexError) as error:
        key = dict(zip(table.key, row, strict=False))
        raise ResultsError(f"stored row of {table.name} {key} is malformed: {error}") from None


def _json_list(value: SqlValue) -> list[object]:
    decoded = json.loads(read_text(value))
    if not isinstance(decoded, list):
        raise BadColumn(f"expected a JSON array, got {decoded!r}")
    return decoded


def _text_item(item: object) -> str:
    if not isinstance(item, str):
        raise BadColumn(f"expected a string in the JSON array, got {item!r}")
    return item


# ---- field metrics ----------------------------------------------------------------------------

_FIELD_REALS = ("mse", "rmse", "mse_raw", "mse_reference", "skill", "acc", "bias",
                "mae_weighted", "bias_weighted")


def field_key(metrics: FieldMetrics) -> tuple[int, str, int]:
    return metrics.lead_hours, metrics.variable, level_code(metrics.level, metrics.variable)


def encode_field(
    d: Dialect, run_id: str, hotkey: str, stage: StageName, metrics: FieldMetrics
) -> Row:
    if not isinstance(metrics, FieldMetrics):
        raise TypeError(f"expected FieldMetrics, got {type(metrics).__name__}")
    where = f"field {metrics.variable}@{metrics.level} +{metrics.lead_hours}h"
    reals = [d.real(number(getattr(metrics, n), f"{where} {n}")) for n in _FIELD_REALS]
    return (
        run_id, hotkey, stage, integer(metrics.lead_hours, f"{where} lead_hours", 0),
        name(metrics.variable, "field variable"), level_code(metrics.level, where), *reals,
        d.optional_real(optional_number(metrics.clone_mse, f"{where} clone_mse")),
        d.optional_real(optional_number(metrics.pattern_r, f"{where} pattern_r")),
        integer(metrics.valid_points, f"{where} valid_points", 0),
    )


def decode_field(row: Row) -> FieldMetrics:
    reals = {n: read_real(value) for n, value in zip(_FIELD_REALS, row[6:15], strict=True)}
    return FieldMetrics(
        variable=read_text(row[4]), level=_level(row[5]), lead_hours=read_int(row[3]),
        clone_mse=read_optional_real(row[15]), pattern_r=read_optional_real(row[16]),
        valid_points=read_int(row[17]), **reals,
    )


# ---- ERA5 variables, leads and results --------------------------------------------------------

def encode_variable(
    d: Dialect, run_id: str, hotkey: str, position: int, score: VariableScore
) -> Row:
    if not isinstance(score, VariableScore):
        raise TypeError(f"expected VariableScore, got {type(score).__name__}")
    where = f"variable {score.variable} +{score.lead_hours}h"
    if not isinstance(score.status, VariableStatus):
        raise TypeError(f"{where} status must be a VariableStatus, got {score.status!r}")
    levels = [None if lv is None else integer(lv, f"{where} level", 1) for lv in score.levels]
    return (
        run_id, hotkey, integer(score.lead_hours, f"{where} lead_hours", 0),
        name(score.variable, "variable"), position,
        d.real(number(score.rmse, f"{where} rmse")), d.real(number(score.acc, f"{where} acc")),
        d.real(number(score.skill, f"{where} skill")), score.status.value,
        optional_text(score.reason, f"{where} reason"), json.dumps(levels),
    )


def _level_item(item: object) -> int | None:
    if item is None or (isinstance(item, int) and not isinstance(item, bool) and item > 0):
        return item
    raise BadColumn(f"expected a positive level or null, got {item!r}")


def decode_variable(row: Row) -> VariableScore:
    return VariableScore(
        variable=read_text(row[3]), lead_hours=read_int(row[2]), rmse=read_real(row[5]),
        acc=read_real(row[6]), skill=read_real(row[7]), status=_enum(VariableStatus, row[8]),
        reason=read_optional_text(row[9]),
        levels=tuple(_level_item(item) for item in _json_list(row[10])),
    )


def encode_lead(d: Dialect, run_id: str, hotkey: str, lead: LeadScore) -> Row:
    if not isinstance(lead, LeadScore):
        raise TypeError(f"expected LeadScore, got {type(lead).__name__}")
    where = f"lead +{lead.lead_hours}h"
    scored = [name(v, f"{where} scored variable") for v in lead.scored_variables]
    failed = [[name(v, f"{where} failed variable"), name(r, f"{where} failure reason")]
              for v, r in lead.failed_variables]
    terms = (lead.skill_term, lead.acc_term, lead.error_term, lead.error_scale)
    return (
        run_id, hotkey, integer(lead.lead_hours, f"{where} lead_hours", 0),
        d.real(number(lead.value, f"{where} value")),
        *(d.optional_real(optional_number(t, f"{where} term")) for t in terms),
        json.dumps(scored), json.dumps(failed),
    )


def _failed_item(item: object) -> tuple[str, str]:
    if isinstance(item, list) and len(item) == 2:
        return _text_item(item[0]), _text_item(item[1])
    raise BadColumn(f"expected a [variable, reason] pair, got {item!r}")


def decode_lead(row: Row) -> LeadScore:
    return LeadScore(
        lead_hours=read_int(row[2]), value=read_real(row[3]),
        skill_term=read_optional_real(row[4]), acc_term=read_optional_real(row[5]),
        error_term=read_optional_real(row[6]), error_scale=read_optional_real(row[7]),
        scored_variables=tuple(_text_item(item) for item in _json_list(row[8])),
        failed_variables=tuple(_failed_item(item) for item in _json_list(row[9])),
    )


def encode_era5(d: Dialect, run_id: str, hotkey: str, result: Era5Result) -> Row:
    if not isinstance(result, Era5Result):
        raise TypeError(f"expected Era5Result, got {type(result).__name__}")
    if not isinstance(result.status, Era5Status):
        raise TypeError(f"ERA5 result status must be an Era5Status, got {result.status!r}")
    average = optional_number(result.average, "ERA5 average")
    return (run_id, hotkey, result.status.value, d.optional_real(average),
            optional_text(result.reason, "ERA5 reason"))


def decode_era5(row: Row, leads: tuple[LeadScore, ...]) -> Era5Result:
    return Era5Result(
        _enum(Era5Status, row[2]), read_optional_real(row[3]), leads, read_optional_text(row[4])
    )


# ---- day-1 ------------------------------------------------------------------------------------

def encode_day1(d: Dialect, run_id: str, hotkey: str, result: Day1Result) -> Row:
    from gaia.tasks.weather.scoring.day1 import Day1Result, Day1Status

    if not isinstance(result, Day1Result):
        raise TypeError(f"expected Day1Result, got {type(result).__name__}")
    if not isinstance(result.status, Day1Status):
        raise TypeError(f"day-1 status must be a Day1Status, got {result.status!r}")
    return (
        run_id, hotkey, result.status.value,
        d.optional_real(optional_number(result.score, "day-1 score")),
        d.flag(bool(result.passed)), d.flag(bool(result.clamped)),
        optional_text(result.reason, "day-1 reason"),
    )


def day1_variable_key(score: Day1VariableScore) -> tuple[str, int, int]:
    where = f"day-1 variable {score.variable}"
    return (name(score.variable, "day-1 variable"), level_code(score.level, where),
            integer(score.lead_hours, f"{where} lead_hours", 0))


def encode_day1_variable(
    d: Dialect, run_id: str, hotkey: str, position: int, score: Day1VariableScore
) -> Row:
    from gaia.tasks.weather.scoring.day1 import Day1VariableScore, Day1VariableStatus

    if not isinstance(score, Day1VariableScore):
        raise TypeError(f"expected Day1VariableScore, got {type(score).__name__}")
    where = f"day-1 variable {score.variable}@{score.level}"
    if not isinstance(score.status, Day1VariableStatus):
        raise TypeError(f"{where} status must be a Day1VariableStatus, got {score.status!r}")
    return (
        run_id, hotkey, *day1_variable_key(score), position, score.status.value,
        d.real(number(score.skill, f"{where} skill")), d.real(number(score.acc, f"{where} acc")),
        d.real(number(score.clone_distance, f"{where} clone_distance")),
        d.optional_real(optional_number(score.clone_threshold, f"{where} clone_threshold")),
        d.real(number(score.penalty, f"{where} penalty")),
        optional_text(score.conversion, f"{where} conversion"),
        optional_text(score.reason, f"{where} reason"),
    )


def decode_day1_variable(row: Row) -> Day1VariableScore:
    from gaia.tasks.weather.scoring.day1 import Day1VariableScore, Day1VariableStatus

    return Day1VariableScore(
        variable=read_text(row[2]), level=_level(row[3]), lead_hours=read_int(row[4]),
        status=_enum(Day1VariableStatus, row[6]), skill=read_real(row[7]),
        acc=read_real(row[8]), clone_distance=read_real(row[9]),
        clone_threshold=read_optional_real(row[10]), penalty=read_real(row[11]),
        conversion=read_optional_text(row[12]), reason=read_optional_text(row[13]),
    )


def decode_day1(row: Row, variables: tuple[Day1VariableScore, ...]) -> Day1Result:
    from gaia.tasks.weather.scoring.day1 import Day1Result, Day1Status

    return Day1Result(
        status=_enum(Day1Status, row[2]), score=read_optional_real(row[3]),
        passed=read_flag(row[4]), clamped=read_flag(row[5]), variables=variables,
        reason=read_optional_text(row[6]),
    )


# ---- failures, overall, run values ------------------------------------------------------------

def encode_failure(run_id: str, hotkey: str, failure: StageFailure) -> Row:
    if not isinstance(failure, StageFailure):
        raise TypeError(f"expected StageFailure, got {type(failure).__name__}")
    check = None if failure.check is None else failure.check.value
    return (run_id, hotkey, failure.stage, failure.kind.value, check, failure.reason)


def decode_failure(row: Row) -> StageFailure:
    check = None if row[4] is None else _enum(CheckKind, row[4])
    return StageFailure(
        stage_name(read_text(row[2])), _enum(FailureKind, row[3]), read_text(row[5]), check
    )


def encode_overall(d: Dialect, run_id: str, hotkey: str, score: OverallScore) -> Row:
    if not isinstance(score, OverallScore):
        raise TypeError(f"expected OverallScore for {hotkey}, got {type(score).__name__}")
    where = f"overall score of {hotkey}"
    return (
        run_id, hotkey, d.real(number(score.value, where)), d.flag(bool(score.day1_pass)),
        d.optional_real(optional_number(score.era5_average, f"{where} era5_average")),
        optional_text(score.reason, f"{where} reason"),
    )


def decode_overall(row: Row) -> OverallScore:
    return OverallScore(
        read_real(row[2]), read_flag(row[3]), read_optional_real(row[4]),
        read_optional_text(row[5]),
    )


def encode_run_value(d: Dialect, run_id: str, hotkey: str, value: RunValue) -> Row:
    if not isinstance(value, RunValue):
        raise TypeError(f"expected RunValue for {hotkey}, got {type(value).__name__}")
    where = f"run value of {hotkey}"
    return (
        run_id, hotkey, d.real(number(value.overall, f"{where} overall")),
        d.real(number(value.bonus, f"{where} bonus")), d.real(number(value.value, where)),
    )


def decode_run_value(row: Row) -> RunValue:
    return RunValue(read_real(row[2]), read_real(row[3]), read_real(row[4]))


def decode_rows(table: Table, rows: list[Row], decode: Callable[[Row], _T]) -> list[_T]:
    """``decode`` applied to each row, a malformed one raising ResultsError."""
    decoded = []
    for row in rows:
        with decoding(table, row):
            decoded.append(decode(row))
    return decoded
