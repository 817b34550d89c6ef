"""The PostgreSQL results database: an asyncpg pool whose sessions work in the store's schema.

The store's SQL names tables without a schema; each pooled session starts with ``search_path`` set
to the configured schema (``gaia_results`` by default), so one database can hold the queue, the
results and several result schemas side by side. A write takes a transaction-level advisory lock
named by the caller (released by its own commit or rollback, so it cannot leak), which serialises
writers of the same miner or run and makes a replace (delete, then upsert) atomic for other
writers. A read runs in one read-only REPEATABLE READ transaction: one snapshot for all queries.
Migrations run on open, once, under an advisory lock, in one transaction.

This module imports asyncpg; it is imported only when a ``postgresql://`` URL is opened.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import asyncpg

from gaia.tasks.weather.results.database import Database, Query, Statement
from gaia.tasks.weather.results.dialect import PostgresDialect, Row
from gaia.tasks.weather.results.records import ResultsError, SchemaTooNew
from gaia.tasks.weather.results.schema import LATEST_VERSION, MIGRATIONS
from gaia.tasks.weather.results.url import PostgresTarget

_LOCK = "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))"
_FAILURES = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)


@lru_cache(maxsize=256)
def numbered(sql: str) -> str:
    """``sql`` with its ``?`` placeholders numbered ``$1``, ``$2``, ... (none sit in literals)."""
    parts = sql.split("?")
    return "".join(f"{part}${i}" for i, part in enumerate(parts[:-1], start=1)) + parts[-1]


class PostgresDatabase(Database):
    """Open with ``await PostgresDatabase.open(target)``; the schema is created if missing."""

    dialect = PostgresDialect()

    def __init__(self, target: PostgresTarget, pool: asyncpg.Pool) -> None:
        self.target = target
        self.description = target.display
        self._pool = pool
        self._closed = False

    @classmethod
    async def open(cls, target: PostgresTarget) -> PostgresDatabase:
        try:
            pool = await asyncpg.create_pool(
                target.dsn, min_size=1, max_size=target.pool_size, timeout=target.connect_timeout,
                server_settings={"search_path": target.schema},
            )
        except (*_FAILURES, TimeoutError) as error:
            raise ResultsError(
                f"cannot open results database {target.display}: {type(error).__name__}: {error}"
            ) from error
        database = cls(target, pool)
        try:
            async with pool.acquire() as connection:
                await _migrate(connection, target)
        except BaseException as error:
            await database.close()
            if isinstance(error, _FAILURES):
                raise ResultsError(
                    f"cannot migrate results database {target.display}: {error}"
                ) from error
            raise
        return database

    async def write(self, lock: str, statements: Sequence[Statement]) -> None:
        self._check_open()
        try:
            async with self._pool.acquire() as connection, connection.transaction():
                await connection.execute(_LOCK, f"gaia.results:{self.target.schema}:{lock}")
                for statement in statements:
                    if statement.rows:
                        await connection.executemany(numbered(statement.sql), statement.rows)
        except _FAILURES as error:
            raise ResultsError(f"results database {self.description}: {error}") from error

    async def read(self, queries: Sequence[Query]) -> list[list[Row]]:
        self._check_open()
        try:
            async with self._pool.acquire() as connection, connection.transaction(
                isolation="repeatable_read", readonly=True
            ):
                results = []
                for query in queries:
                    records = await connection.fetch(numbered(query.sql), *query.parameters)
                    results.append([tuple(record) for record in records])
                return results
        except _FAILURES as error:
            raise ResultsError(f"results database {self.description}: {error}") from error

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._pool.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ResultsError(f"results database {self.description} is closed")


async def _migrate(connection: asyncpg.Connection, target: PostgresTarget) -> list[int]:
    """Bring the schema up to the latest version; returns the versions applied now."""
    schema = '"' + target.schema + '"'  # a checked lower-case identifier (see url)
    async with connection.transaction():
        await connection.execute(_LOCK, f"gaia.results.migrate:{target.schema}")
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {schema}")
        await connection.execute(f"SET LOCAL search_path TO {schema}")
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version integer PRIMARY KEY, description text NOT NULL)"
        )
        rows = await connection.fetch("SELECT version FROM schema_migrations")
        applied = {row[0] for row in rows}
        if applied and max(applied) > LATEST_VERSION:
            raise SchemaTooNew(
                f"results schema {target.schema!r} of {target.display} is at version "
                f"{max(applied)}, newer than this code knows ({LATEST_VERSION}); upgrade gaia "
                "before opening it"
            )
        done = []
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            for sql in migration.statements(PostgresDialect.types):
                await connection.execute(sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, description) VALUES ($1, $2)",
                migration.version, migration.description,
            )
            done.append(migration.version)
        return done
