"""Durable storage of weather scores: SQLite by default, PostgreSQL when configured.

``store = await open_results("sqlite:///results.db")`` (or ``postgresql://user@host/db``) opens
the database, creating it and applying the versioned schema migrations if needed, and returns a
``ResultsStore``. Saves are idempotent upserts on natural keys; reads decode the same scoring
dataclasses that were saved. Nothing heavy is imported here: asyncpg only when a PostgreSQL URL is
opened, the day-1 scoring module (numpy) only when a day-1 result is decoded.
"""

from __future__ import annotations

from gaia.tasks.weather.results.records import (
    STAGES,
    FailureKind,
    MinerRow,
    MinerStatus,
    ResultsError,
    ResultsURLError,
    RunConflict,
    SchemaTooNew,
    StageFailure,
    StageName,
    WindowScores,
)
from gaia.tasks.weather.results.store import ResultsStore
from gaia.tasks.weather.results.url import PostgresTarget, SqliteTarget, parse_results_url


async def open_results(url: str) -> ResultsStore:
    """Open (creating and migrating if needed) the results database named by ``url``.

    ``sqlite:///relative.db``, ``sqlite:////absolute/path.db`` or ``postgresql://...`` (see
    ``results.url`` for the options). Raises ResultsURLError for a bad URL, ResultsError when
    the database cannot be opened, SchemaTooNew when a newer gaia migrated it.
    """
    target = parse_results_url(url)
    if isinstance(target, SqliteTarget):
        from gaia.tasks.weather.results.sqlite import SqliteDatabase

        return ResultsStore(await SqliteDatabase.open(target))
    if isinstance(target, PostgresTarget):
        try:
            from gaia.tasks.weather.results.postgres import PostgresDatabase
        except ImportError as error:
            raise ResultsError(
                f"{target.display} needs asyncpg: pip install 'gaia-validator-core[postgres]'"
            ) from error
        return ResultsStore(await PostgresDatabase.open(target))
    raise ResultsURLError(f"unsupported results URL {url!r}")


__all__ = [
    "STAGES",
    "FailureKind",
    "MinerRow",
    "MinerStatus",
    "ResultsError",
    "ResultsStore",
    "ResultsURLError",
    "RunConflict",
    "SchemaTooNew",
    "StageFailure",
    "StageName",
    "WindowScores",
    "open_results",
    "parse_results_url",
]
