"""The SQLite results database: the standard-library ``sqlite3`` on one dedicated thread.

Every call runs on a single-thread executor that owns the connection, so the event loop never
blocks on disk and the connection is never shared between threads. The file uses write-ahead
logging (readers never block the writer) and a busy timeout; every write is one ``BEGIN
IMMEDIATE`` transaction, so several processes saving at once queue for the write lock instead of
failing, and a read runs in one deferred transaction (one snapshot) that never upgrades to a write.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from gaia.tasks.weather.results.database import Database, Query, Statement
from gaia.tasks.weather.results.dialect import Row, SqliteDialect
from gaia.tasks.weather.results.records import ResultsError, SchemaTooNew
from gaia.tasks.weather.results.schema import LATEST_VERSION, MIGRATIONS
from gaia.tasks.weather.results.url import SqliteTarget

_T = TypeVar("_T")
_MIGRATIONS_TABLE = (
    "CREATE TABLE IF NOT EXISTS schema_migrations "
    "(version integer PRIMARY KEY, description text NOT NULL)"
)


class SqliteDatabase(Database):
    """Open with ``await SqliteDatabase.open(target)``; the file and its folder are created."""

    dialect = SqliteDialect()

    def __init__(self, target: SqliteTarget) -> None:
        self.target = target
        self.description = f"sqlite:///{target.path}"
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gaia-results")
        self._connection: sqlite3.Connection | None = None
        self._closed = False

    @classmethod
    async def open(cls, target: SqliteTarget) -> SqliteDatabase:
        database = cls(target)
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(database._executor, database._connect)
        except BaseException:
            await database.close()
            raise
        return database

    async def write(self, lock: str, statements: Sequence[Statement]) -> None:
        await self._call(lambda connection: _write(connection, statements))

    async def read(self, queries: Sequence[Query]) -> list[list[Row]]:
        return await self._call(lambda connection: _read(connection, queries))

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        loop = asyncio.get_running_loop()
        try:
            await loop.run_in_executor(self._executor, self._disconnect)
        finally:
            self._executor.shutdown(wait=False)

    async def _call(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._closed:
            raise ResultsError(f"results database {self.description} is closed")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._run, operation)

    def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        if self._connection is None:
            raise ResultsError(f"results database {self.description} is not open")
        try:
            return operation(self._connection)
        except sqlite3.Error as error:
            raise ResultsError(f"results database {self.description}: {error}") from error

    def _connect(self) -> None:
        path = self.target.path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ResultsError(f"cannot create the folder of {self.description}: {error}") from None
        try:
            connection = sqlite3.connect(
                path, timeout=self.target.busy_timeout, isolation_level=None
            )
        except sqlite3.Error as error:
            raise ResultsError(f"cannot open {self.description}: {error}") from None
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ResultsError(f"{self.description}: cannot enable WAL (got {mode!r})")
            connection.execute(f"PRAGMA synchronous={self.target.synchronous.upper()}")
            _migrate(connection, self.description)
        except sqlite3.DatabaseError as error:
            connection.close()
            raise ResultsError(
                f"{self.description} is not a usable SQLite database: {error}"
            ) from None
        except BaseException:
            connection.close()
            raise
        self._connection = connection

    def _disconnect(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None


def _write(connection: sqlite3.Connection, statements: Sequence[Statement]) -> None:
    connection.execute("BEGIN IMMEDIATE")
    try:
        for statement in statements:
            if statement.rows:
                connection.executemany(statement.sql, statement.rows)
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


def _read(connection: sqlite3.Connection, queries: Sequence[Query]) -> list[list[Row]]:
    connection.execute("BEGIN")
    try:
        return [connection.execute(q.sql, q.parameters).fetchall() for q in queries]
    finally:
        connection.execute("COMMIT")


def _migrate(connection: sqlite3.Connection, description: str) -> list[int]:
    """Apply the migrations not yet recorded, in one write transaction; returns their versions."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute(_MIGRATIONS_TABLE)
        applied = {row[0] for row in connection.execute("SELECT version FROM schema_migrations")}
        if applied and max(applied) > LATEST_VERSION:
            raise SchemaTooNew(
                f"{description} is at results schema version {max(applied)}, newer than this "
                f"code knows ({LATEST_VERSION}); upgrade gaia before opening it"
            )
        done = []
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            for sql in migration.statements(SqliteDialect.types):
                connection.execute(sql)
            connection.execute(
                "INSERT INTO schema_migrations (version, description) VALUES (?, ?)",
                (migration.version, migration.description),
            )
            done.append(migration.version)
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")
    return done
