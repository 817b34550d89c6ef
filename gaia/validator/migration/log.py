"""A durable log of shadow records in one SQLite file, shared safely by several processes.

Every call runs the standard-library ``sqlite3`` module in a worker thread (``asyncio.to_thread``),
so the event loop never blocks on disk. The database uses write-ahead logging and a busy timeout;
each append is one ``BEGIN IMMEDIATE`` transaction, so processes appending at the same time queue
for the write lock instead of failing. Keys and mismatches are stored as JSON text (never pickle),
and rows are validated when read back.
"""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import TracebackType
from typing import TypeVar

from gaia.validator.migration.compare import Mismatch
from gaia.validator.migration.flags import Route
from gaia.validator.migration.record import ShadowRecord

SCHEMA_VERSION = 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS shadow_records (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    flag TEXT NOT NULL,
    key_parts TEXT NOT NULL,
    primary_route TEXT NOT NULL,
    primary_seconds REAL NOT NULL,
    shadow_seconds REAL,
    mismatch_count INTEGER NOT NULL,
    mismatches TEXT NOT NULL,
    created_us INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS shadow_records_created ON shadow_records (created_us, id);
"""
_COLUMNS = (
    "id, flag, key_parts, primary_route, primary_seconds, shadow_seconds, mismatches, created_us"
)
_T = TypeVar("_T")


class ShadowLogError(RuntimeError):
    """The shadow log file cannot be used (not a database, a newer schema, a malformed row)."""


class ShadowLog:
    """Append and read ``ShadowRecord``s in the SQLite file at ``path`` (created on first use,
    with its parent directory). Use ``async with`` or call ``close()`` when done."""

    def __init__(self, path: str | os.PathLike[str], *, busy_timeout: float = 30.0) -> None:
        if busy_timeout <= 0:
            raise ValueError(f"busy_timeout must be positive, got {busy_timeout!r}")
        self._path = Path(path)
        self._busy_timeout = busy_timeout
        self._connection: sqlite3.Connection | None = None
        self._lock = threading.Lock()
        self._closed = False

    @property
    def path(self) -> Path:
        return self._path

    async def append(self, record: ShadowRecord) -> None:
        """Store one record durably (committed before this returns)."""
        row = _encode(record)
        await self._run(lambda connection: _insert(connection, row))

    async def records(
        self, since: datetime | None = None, *, flag: str | None = None
    ) -> list[ShadowRecord]:
        """Records created at or after ``since`` (timezone-aware), oldest first."""
        query = f"SELECT {_COLUMNS} FROM shadow_records WHERE created_us >= ?"
        parameters: list[object] = [_to_micros(since) if since is not None else -(2**62)]
        if flag is not None:
            query += " AND flag = ?"
            parameters.append(flag)
        query += " ORDER BY created_us, id"
        rows = await self._run(lambda connection: connection.execute(query, parameters).fetchall())
        return [_decode(self._path, row) for row in rows]

    async def clear(self) -> int:
        """Delete every record; returns how many were deleted."""
        return await self._run(_delete_all)

    async def close(self) -> None:
        await asyncio.to_thread(self._close_connection)

    async def __aenter__(self) -> ShadowLog:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    async def _run(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        return await asyncio.to_thread(self._locked, operation)

    def _locked(self, operation: Callable[[sqlite3.Connection], _T]) -> _T:
        with self._lock:
            if self._closed:
                raise ShadowLogError(f"shadow log {self._path} is closed")
            if self._connection is None:
                self._connection = self._open()
            try:
                return operation(self._connection)
            except sqlite3.DatabaseError as exc:
                raise ShadowLogError(f"shadow log {self._path}: {exc}") from exc

    def _open(self) -> sqlite3.Connection:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        connection = sqlite3.connect(
            self._path, timeout=self._busy_timeout, isolation_level=None, check_same_thread=False
        )
        try:
            mode = connection.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise ShadowLogError(f"shadow log {self._path}: cannot enable WAL (got {mode!r})")
            connection.execute("PRAGMA synchronous=FULL")
            _migrate(self._path, connection)
        except sqlite3.DatabaseError as exc:
            connection.close()
            raise ShadowLogError(
                f"shadow log {self._path} is not a usable database: {exc}"
            ) from exc
        except BaseException:
            connection.close()
            raise
        return connection

    def _close_connection(self) -> None:
        with self._lock:
            self._closed = True
            if self._connection is not None:
                self._connection.close()
                self._connection = None


def _migrate(path: Path, connection: sqlite3.Connection) -> None:
    with _immediate(connection):
        version = connection.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            for statement in _SCHEMA.split(";"):
                if statement.strip():
                    connection.execute(statement)
            connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        elif version != SCHEMA_VERSION:
            raise ShadowLogError(
                f"shadow log {path} has schema version {version}; this code reads version "
                f"{SCHEMA_VERSION}"
            )


@contextmanager
def _immediate(connection: sqlite3.Connection) -> Iterator[None]:
    """One write transaction; BEGIN IMMEDIATE waits (busy timeout) for other writers."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise
    connection.execute("COMMIT")


_Row = tuple[str, str, str, float, float | None, int, str, int]


def _insert(connection: sqlite3.Connection, row: _Row) -> None:
    with _immediate(connection):
        connection.execute(
            "INSERT INTO shadow_records (flag, key_parts, primary_route, primary_seconds, "
            "shadow_seconds, mismatch_count, mismatches, created_us) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            row,
        )


def _delete_all(connection: sqlite3.Connection) -> int:
    with _immediate(connection):
        deleted = connection.execute("DELETE FROM shadow_records").rowcount
    return int(deleted)


def _to_micros(moment: datetime) -> int:
    if moment.tzinfo is None:
        raise ValueError(f"shadow log times must be timezone-aware, got naive {moment!r}")
    return (moment - _EPOCH) // _MICROSECOND


def _encode(record: ShadowRecord) -> _Row:
    if not isinstance(record, ShadowRecord):
        raise TypeError(f"ShadowLog.append expects a ShadowRecord, got {type(record).__name__}")
    try:
        mismatches = json.dumps([asdict(m) for m in record.mismatches], allow_nan=False)
    except ValueError as exc:
        raise ValueError(
            f"shadow record {record.key}: a mismatch diff is not finite: {exc}"
        ) from None
    return (
        record.flag,
        json.dumps(list(record.key)),
        record.primary.value,
        float(record.primary_seconds),
        None if record.shadow_seconds is None else float(record.shadow_seconds),
        len(record.mismatches),
        mismatches,
        _to_micros(record.created_at),
    )


def _decode(path: Path, row: tuple[object, ...]) -> ShadowRecord:
    row_id, flag, key_text, route, primary_seconds, shadow_seconds, mismatch_text, created = row
    try:
        key = json.loads(str(key_text))
        items = json.loads(str(mismatch_text))
        if not isinstance(key, list) or not isinstance(items, list):
            raise ValueError("key_parts and mismatches must be JSON arrays")
        if not isinstance(primary_seconds, int | float) or not isinstance(created, int):
            raise ValueError("primary_seconds must be a number and created_us an integer")
        if shadow_seconds is not None and not isinstance(shadow_seconds, int | float):
            raise ValueError("shadow_seconds must be a number or NULL")
        return ShadowRecord(
            key=tuple(key),
            primary=Route(route),
            primary_seconds=float(primary_seconds),
            shadow_seconds=None if shadow_seconds is None else float(shadow_seconds),
            mismatches=[_decode_mismatch(item) for item in items],
            created_at=_EPOCH + created * _MICROSECOND,
            flag=str(flag),
        )
    except (ValueError, TypeError, KeyError) as exc:
        raise ShadowLogError(f"shadow log {path}: row {row_id} is malformed: {exc}") from None


def _decode_mismatch(item: object) -> Mismatch:
    if not isinstance(item, dict):
        raise ValueError(f"a mismatch must be a JSON object, got {item!r}")
    texts = [item["path"], item["legacy"], item["new"]]
    if not all(isinstance(text, str) for text in texts):
        raise ValueError(f"mismatch path, legacy and new must be strings: {item!r}")
    diffs = [item.get("abs_diff"), item.get("rel_diff")]
    if not all(
        d is None or (isinstance(d, int | float) and not isinstance(d, bool)) for d in diffs
    ):
        raise ValueError(f"mismatch abs_diff and rel_diff must be numbers or null: {item!r}")
    return Mismatch(
        path=texts[0],
        legacy=texts[1],
        new=texts[2],
        abs_diff=None if diffs[0] is None else float(diffs[0]),
        rel_diff=None if diffs[1] is None else float(diffs[1]),
    )
