"""How Python values become column values in each database, and back.

Both backends run the same SQL (``?`` placeholders, ``INSERT ... ON CONFLICT ... DO UPDATE``);
only the column types and a few encodings differ:

============  ================================  =======================================
value         SQLite                            PostgreSQL
============  ================================  =======================================
float         REAL; NaN and -0.0 as the text    double precision (NaN, +-inf native)
              ``'nan'`` and ``'-zero'`` (a
              REAL holds neither; text that
              looks numeric would be turned
              back into a REAL); +-inf as REAL
None          NULL (only ever for None)         NULL
datetime      INTEGER microseconds since the    timestamptz
              Unix epoch (UTC)
bool          INTEGER 0 / 1                     boolean
============  ================================  =======================================

Decoding accepts either backend's form, so one decoder serves both.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

SqlValue = str | int | float | bool | datetime | None
Row = tuple[SqlValue, ...]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_TEXT_FLOATS = {"nan": math.nan, "-zero": -0.0}


class Dialect:
    """The column types and value encodings of one backend."""

    name = "abstract"
    types: dict[str, str] = {}
    """DDL type names by token (``real``, ``time``, ``flag``) used in the migrations."""

    def real(self, value: float) -> SqlValue:
        raise NotImplementedError

    def time(self, moment: datetime) -> SqlValue:
        raise NotImplementedError

    def flag(self, value: bool) -> SqlValue:
        raise NotImplementedError

    def optional_real(self, value: float | None) -> SqlValue:
        return None if value is None else self.real(value)


class SqliteDialect(Dialect):
    name = "sqlite"
    types = {"real": "REAL", "time": "INTEGER", "flag": "INTEGER", "bigint": "INTEGER"}

    def real(self, value: float) -> SqlValue:
        if math.isnan(value):
            return "nan"
        if value == 0.0 and math.copysign(1.0, value) < 0.0:
            return "-zero"
        return value

    def time(self, moment: datetime) -> SqlValue:
        return (aware(moment) - _EPOCH) // _MICROSECOND

    def flag(self, value: bool) -> SqlValue:
        return 1 if value else 0


class PostgresDialect(Dialect):
    name = "postgresql"
    types = {"real": "double precision", "time": "timestamptz", "flag": "boolean",
             "bigint": "bigint"}

    def real(self, value: float) -> SqlValue:
        return value

    def time(self, moment: datetime) -> SqlValue:
        return aware(moment).astimezone(UTC)

    def flag(self, value: bool) -> SqlValue:
        return value


def aware(moment: datetime) -> datetime:
    """``moment`` itself; raises ValueError for a naive datetime (its instant is unknown)."""
    if not isinstance(moment, datetime):
        raise TypeError(f"expected a datetime, got {type(moment).__name__}")
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"times must be timezone-aware, got naive {moment!r}")
    return moment


class BadColumn(ValueError):
    """A stored value has the wrong type for its column (the caller adds where it is)."""


def read_real(value: SqlValue) -> float:
    if isinstance(value, float):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str) and value in _TEXT_FLOATS:
        return _TEXT_FLOATS[value]
    raise BadColumn(f"expected a number, got {value!r}")


def read_optional_real(value: SqlValue) -> float | None:
    return None if value is None else read_real(value)


def read_int(value: SqlValue) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadColumn(f"expected an integer, got {value!r}")


def read_optional_int(value: SqlValue) -> int | None:
    return None if value is None else read_int(value)


def read_text(value: SqlValue) -> str:
    if isinstance(value, str):
        return value
    raise BadColumn(f"expected text, got {value!r}")


def read_optional_text(value: SqlValue) -> str | None:
    return None if value is None else read_text(value)


def read_flag(value: SqlValue) -> bool:
    if isinstance(value, bool):
        return value
    if value in (0, 1) and isinstance(value, int):
        return value == 1
    raise BadColumn(f"expected a boolean, got {value!r}")


def read_time(value: SqlValue) -> datetime:
    """A UTC datetime from microseconds since the epoch or a timestamptz."""
    if isinstance(value, datetime):
        return aware(value).astimezone(UTC)
    return _EPOCH + read_int(value) * _MICROSECOND
