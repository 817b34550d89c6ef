"""The SQLite queue schema as numbered migrations, applied idempotently every time a queue opens.

The applied version is the database's ``PRAGMA user_version``. ``migrate`` runs under
``BEGIN IMMEDIATE``, so several processes opening the same file at once apply each step exactly
once; a file written by newer code (a higher version than known here) is refused, never guessed
at. Add a migration by appending to ``MIGRATIONS``; never edit one that has shipped.

Indexes and why (every one serves a statement of :mod:`.store`):

- ``jobs_claim_any`` / ``jobs_claim_by_type``: partial over claimable rows, in claim order
  ``(priority DESC, not_before, seq)``, optionally after ``type``. A claim reads the head of each
  priority level, so it costs one index seek per level even with a million queued jobs.
- ``jobs_dedupe_active``: the dedupe key is unique over every active state (queued, running,
  retry_scheduled); ``INSERT ... ON CONFLICT DO NOTHING`` targets it, so there is no
  check-then-insert race.
- ``jobs_lease_expiry``: the reaper's scan for expired leases of running jobs.
- ``jobs_finished``: the reaper's purge of finished jobs past retention.
"""

from __future__ import annotations

import sqlite3

CLAIMABLE = "status IN ('queued', 'retry_scheduled')"
FINISHED = "status IN ('succeeded', 'cancelled', 'dead')"
ACTIVE = "status IN ('queued', 'running', 'retry_scheduled') AND dedupe_key IS NOT NULL"

_V1: tuple[str, ...] = (
    """
    CREATE TABLE jobs (
        seq INTEGER PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        type TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN (
            'queued', 'running', 'succeeded', 'retry_scheduled', 'dead', 'cancelled')),
        priority INTEGER NOT NULL,
        not_before REAL NOT NULL,
        attempts INTEGER NOT NULL,
        max_attempts INTEGER NOT NULL,
        dedupe_key TEXT,
        timeout REAL NOT NULL,
        memory_mb INTEGER NOT NULL,
        correlation_id TEXT NOT NULL,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        lease_token INTEGER NOT NULL,
        lease_expires_at REAL,
        worker_id TEXT,
        payload TEXT NOT NULL,
        metadata TEXT NOT NULL,
        error TEXT,
        result TEXT,
        progress TEXT,
        quarantine TEXT
    ) STRICT
    """,
    f"CREATE INDEX jobs_claim_any ON jobs (priority DESC, not_before, seq) WHERE {CLAIMABLE}",
    "CREATE INDEX jobs_claim_by_type ON jobs (type, priority DESC, not_before, seq) "
    f"WHERE {CLAIMABLE}",
    f"CREATE UNIQUE INDEX jobs_dedupe_active ON jobs (dedupe_key) WHERE {ACTIVE}",
    "CREATE INDEX jobs_lease_expiry ON jobs (lease_expires_at) WHERE status = 'running'",
    f"CREATE INDEX jobs_finished ON jobs (status, finished_at) WHERE {FINISHED}",
)

MIGRATIONS: tuple[tuple[str, ...], ...] = (_V1,)
"""Migration ``n`` (1-based) is ``MIGRATIONS[n - 1]``: statements run in one transaction."""

SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was migrated by newer code than this; refusing to touch it."""


def schema_version(connection: sqlite3.Connection) -> int:
    row = connection.execute("PRAGMA user_version").fetchone()
    return int(row[0])


def migrate(connection: sqlite3.Connection, path: str) -> list[int]:
    """Apply every pending migration in one immediate transaction; return the versions applied.

    ``connection`` must be in autocommit mode (``isolation_level=None``).
    """
    if schema_version(connection) == SCHEMA_VERSION:
        return []  # the common case: nothing to do, no write lock taken
    connection.execute("BEGIN IMMEDIATE")
    try:
        current = schema_version(connection)  # re-read under the lock: another process may win
        if current > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"{path} has queue schema version {current}, newer than this code's "
                f"{SCHEMA_VERSION}; upgrade gaia before opening it"
            )
        applied = []
        for version in range(current + 1, SCHEMA_VERSION + 1):
            for statement in MIGRATIONS[version - 1]:
                connection.execute(statement)
            applied.append(version)
        connection.execute(f"PRAGMA user_version = {SCHEMA_VERSION:d}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return applied
