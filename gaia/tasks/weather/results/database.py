"""The narrow interface the results store needs from a database, implemented per backend.

A write is a list of statements, each run for a batch of parameter rows, all in ONE transaction
that first takes an exclusive lock named by the caller (PostgreSQL: a transaction-level advisory
lock; SQLite: ``BEGIN IMMEDIATE`` already serialises every writer). A read is a list of queries
run in one read transaction, so they see one consistent snapshot. SQL uses ``?`` placeholders.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass

from gaia.tasks.weather.results.dialect import Dialect, Row


@dataclass(frozen=True)
class Statement:
    """One SQL statement and the parameter rows it runs for (once per row)."""

    sql: str
    rows: Sequence[Row]


@dataclass(frozen=True)
class Query:
    sql: str
    parameters: Row = ()


class Database(ABC):
    """One open results database."""

    dialect: Dialect
    description: str
    """Where the database is, for messages (passwords masked)."""

    @abstractmethod
    async def write(self, lock: str, statements: Sequence[Statement]) -> None:
        """Run ``statements`` in one transaction holding the lock ``lock``; all or nothing."""

    @abstractmethod
    async def read(self, queries: Sequence[Query]) -> list[list[Row]]:
        """The rows of each query, all from one snapshot."""

    @abstractmethod
    async def close(self) -> None:
        """Release the connections; further calls raise ResultsError. Idempotent."""
