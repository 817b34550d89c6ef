"""The queue's statements: one function per operation, run on the queue's database thread.

State changes (enqueue, claim, settle, change_job) are called by :mod:`.database` inside a
``BEGIN IMMEDIATE`` transaction (grouped with others, each in its own savepoint): the write
lock is taken before the job is read, so what is checked (lease token, status) cannot change
before it is written, across threads and processes alike. The reaper runs its own chunked
transactions. Every change is the core's lifecycle function applied to the decoded row, so this
backend follows exactly the rules of every other one.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager

from gaia.validator.core import lifecycle
from gaia.validator.core.errors import CorruptJob, DuplicateJob, InvalidTransition, JobNotFound
from gaia.validator.core.job import Job, JobError
from gaia.validator.core.queue import Lease
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.sqlite import rows
from gaia.validator.queues.sqlite.schema import ACTIVE, CLAIMABLE, FINISHED

CORRUPT_RECORD = "corrupt_record"
REAP_CHUNK = 500
_KEY_CHUNK = 500

_CLAIM_HEAD = {
    False: f"SELECT {rows.SELECT_COLUMNS} FROM jobs INDEXED BY jobs_claim_any "
    f"WHERE {CLAIMABLE} AND priority < ? ORDER BY priority DESC, not_before, seq LIMIT 1",
    True: f"SELECT {rows.SELECT_COLUMNS} FROM jobs INDEXED BY jobs_claim_by_type "
    f"WHERE {CLAIMABLE} AND type = ? AND priority < ? "
    "ORDER BY priority DESC, not_before, seq LIMIT 1",
}
_ABOVE_ANY_PRIORITY = 1 << 62
_UPSERT = f"{rows.INSERT} ON CONFLICT (dedupe_key) WHERE {ACTIVE} DO NOTHING"
_BY_ID = f"SELECT {rows.SELECT_COLUMNS} FROM jobs WHERE id = ?"


@contextmanager
def immediate(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction that holds the database's write lock from its first statement."""
    connection.execute("BEGIN IMMEDIATE")
    try:
        yield connection
        connection.execute("COMMIT")
    except BaseException:
        if connection.in_transaction:
            connection.execute("ROLLBACK")
        raise


# -- enqueue -------------------------------------------------------------------------------
def _duplicate_id(exc: sqlite3.IntegrityError, jobs: Sequence[Job]) -> DuplicateJob:
    ids = ", ".join(job.id for job in jobs[:3]) + (" ..." if len(jobs) > 3 else "")
    return DuplicateJob(f"cannot enqueue job(s) {ids}: {exc} (a job id may be stored only once)")


def enqueue(connection: sqlite3.Connection, jobs: Sequence[Job]) -> list[Job]:
    """Insert ``jobs`` in one transaction; per input, the stored job or the active duplicate."""
    lifecycle.check_enqueueable(jobs)
    try:
        connection.executemany(_UPSERT, [rows.insert_params(job) for job in jobs])
    except sqlite3.IntegrityError as exc:
        raise _duplicate_id(exc, jobs) from None
    keys = list({job.dedupe_key for job in jobs if job.dedupe_key is not None})
    holders = _active_holders(connection, keys) if keys else {}
    stored: list[Job] = []
    for job in jobs:
        holder = holders.get(job.dedupe_key) if job.dedupe_key is not None else None
        if holder is None or rows.row_id(holder) == job.id:
            stored.append(job)
        else:
            stored.append(rows.decode_row(holder))
    return stored


def _active_holders(connection: sqlite3.Connection, keys: list[str]) -> dict[str, rows.Row]:
    holders: dict[str, rows.Row] = {}
    for start in range(0, len(keys), _KEY_CHUNK):
        chunk = keys[start : start + _KEY_CHUNK]
        marks = ", ".join("?" for _ in chunk)
        query = (
            f"SELECT dedupe_key, {rows.SELECT_COLUMNS} FROM jobs "
            f"WHERE {ACTIVE} AND dedupe_key IN ({marks})"
        )
        for found in connection.execute(query, chunk):
            holders[found[0]] = found[1:]
    return holders


# -- claim ---------------------------------------------------------------------------------
def claim(
    connection: sqlite3.Connection,
    worker_id: str,
    types: Collection[str] | None,
    lease_seconds: float,
    now: float,
    count: int = 1,
) -> tuple[list[Job], float | None]:
    """Claim up to ``count`` of the best due jobs, best first; when none is due, also the
    earliest ``not_before`` among pending jobs (else None).

    A row that does not decode is dead-lettered on the spot and the claim goes on."""
    claimed: list[Job] = []
    while len(claimed) < count:
        row, next_due = _best_due(connection, types, now)
        if row is None:
            return claimed, (next_due if not claimed else None)
        try:
            job = rows.decode_row(row)
        except CorruptJob as exc:
            _dead_letter_corrupt(connection, row, exc, now)
            continue
        job = lifecycle.claimed(job, worker_id, now, lease_seconds)
        _write(connection, row, job)
        claimed.append(job)
    return claimed, None


def _best_due(
    connection: sqlite3.Connection, types: Collection[str] | None, now: float
) -> tuple[rows.Row | None, float | None]:
    scopes: Sequence[str | None] = [None] if types is None else sorted(set(types))
    best: rows.Row | None = None
    next_due: float | None = None
    for job_type in scopes:
        row, due = _head_of_best_level(connection, job_type, now)
        if due is not None:
            next_due = due if next_due is None else min(next_due, due)
        if row is not None and (best is None or rows.claim_order(row) < rows.claim_order(best)):
            best = row
    return best, next_due


def _head_of_best_level(
    connection: sqlite3.Connection, job_type: str | None, now: float
) -> tuple[rows.Row | None, float | None]:
    """Walk priority levels from the top; each level's head (earliest not_before, then seq)
    is one index seek. The first due head is the best due job; a level whose head is not due
    has no due job at all. Also returns the earliest not_before seen (for the wait)."""
    query = _CLAIM_HEAD[job_type is not None]
    below = _ABOVE_ANY_PRIORITY
    earliest: float | None = None
    while True:
        params = (below,) if job_type is None else (job_type, below)
        row = connection.execute(query, params).fetchone()
        if row is None:
            return None, earliest
        negated_priority, not_before, _ = rows.claim_order(row)
        if not_before <= now:
            return row, None
        earliest = not_before if earliest is None else min(earliest, not_before)
        below = -negated_priority


def _dead_letter_corrupt(
    connection: sqlite3.Connection, row: rows.Row, exc: CorruptJob, now: float
) -> None:
    error = JobError(
        f"stored job record is invalid, dead-lettered at claim: {exc}", kind=CORRUPT_RECORD
    )
    replacements, quarantine = rows.salvage(row)
    replacements["error"] = rows.dump({"message": error.message, "kind": error.kind})
    assignments = ", ".join(f"{column} = ?" for column in replacements)
    connection.execute(
        f"UPDATE jobs SET status = 'dead', {assignments}, quarantine = ?, finished_at = ?, "
        "updated_at = ?, lease_expires_at = NULL, worker_id = NULL WHERE seq = ?",
        (*replacements.values(), rows.dump(quarantine), now, now, rows.row_seq(row)),
    )


def _write(connection: sqlite3.Connection, row: rows.Row, job: Job) -> None:
    connection.execute(rows.UPDATE, rows.update_params(job, rows.row_seq(row)))


# -- changes to one job ----------------------------------------------------------------------
def _load(connection: sqlite3.Connection, job_id: str) -> tuple[rows.Row, Job] | None:
    row = connection.execute(_BY_ID, (job_id,)).fetchone()
    return None if row is None else (row, rows.decode_row(row))


def settle(
    connection: sqlite3.Connection, lease: Lease, now: float, change: Callable[[Job], Job]
) -> Job:
    """Apply ``change`` to the job ``lease`` holds; LeaseLost (nothing written) if it does not."""
    loaded = _load(connection, lease.job_id)
    held = lifecycle.check_lease(None if loaded is None else loaded[1], lease, now)
    assert loaded is not None
    updated = change(held)
    _write(connection, loaded[0], updated)
    return updated


def change_job(connection: sqlite3.Connection, job_id: str, change: Callable[[Job], Job]) -> Job:
    """Apply ``change`` to job ``job_id`` (cancel, requeue); JobNotFound if there is none."""
    loaded = _load(connection, job_id)
    if loaded is None:
        raise JobNotFound(f"no job with id {job_id}")
    row, job = loaded
    updated = change(job)
    try:
        _write(connection, row, updated)
    except sqlite3.IntegrityError:
        holder = _active_holders(connection, [str(job.dedupe_key)]).get(str(job.dedupe_key))
        raise InvalidTransition(
            f"job {job_id} cannot become {updated.status.value}: dedupe key "
            f"{job.dedupe_key!r} is held by active job "
            f"{None if holder is None else rows.row_id(holder)}"
        ) from None
    return updated


# -- reading ---------------------------------------------------------------------------------
def get(connection: sqlite3.Connection, job_id: str) -> Job | None:
    row = connection.execute(_BY_ID, (job_id,)).fetchone()
    return None if row is None else rows.decode_row(row)


def list_jobs(
    connection: sqlite3.Connection, status: JobStatus | None, job_type: str | None, limit: int
) -> list[Job]:
    clauses, params = [], []
    if status is not None:
        clauses.append("status = ?")
        params.append(status.value)
    if job_type is not None:
        clauses.append("type = ?")
        params.append(job_type)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    query = f"SELECT {rows.SELECT_COLUMNS} FROM jobs {where} ORDER BY created_at, seq LIMIT ?"
    return [rows.decode_row(row) for row in connection.execute(query, (*params, limit))]


def stats(
    connection: sqlite3.Connection, now: float
) -> tuple[dict[str, dict[JobStatus, int]], float | None, int]:
    """(counts by type and status, oldest due not_before, expired leases), one snapshot."""
    connection.execute("BEGIN")
    try:
        counts: dict[str, dict[JobStatus, int]] = {}
        grouped = "SELECT type, status, COUNT(*) FROM jobs GROUP BY type, status"
        for job_type, status, count in connection.execute(grouped):
            counts.setdefault(job_type, {})[JobStatus(status)] = count
        oldest = connection.execute(
            f"SELECT MIN(not_before) FROM jobs WHERE {CLAIMABLE} AND not_before <= ?", (now,)
        ).fetchone()[0]
        expired = connection.execute(
            "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND lease_expires_at < ?", (now,)
        ).fetchone()[0]
    finally:
        connection.execute("COMMIT")
    return counts, oldest, int(expired)


# -- housekeeping ----------------------------------------------------------------------------
def reap(
    connection: sqlite3.Connection, now: float, result_ttl: float, dead_ttl: float | None
) -> int:
    """Reclaim expired leases and purge finished jobs past retention, in chunks of
    :data:`REAP_CHUNK` rows per transaction so other processes are never held up for long."""
    reclaimed = 0
    while True:
        with immediate(connection):
            expired = connection.execute(
                f"SELECT {rows.SELECT_COLUMNS} FROM jobs INDEXED BY jobs_lease_expiry "
                "WHERE status = 'running' AND lease_expires_at < ? LIMIT ?",
                (now, REAP_CHUNK),
            ).fetchall()
            for row in expired:
                try:
                    job = rows.decode_row(row)
                except CorruptJob as exc:
                    _dead_letter_corrupt(connection, row, exc, now)
                    continue
                _write(connection, row, lifecycle.reclaimed(job, now))
                reclaimed += 1
        if len(expired) < REAP_CHUNK:
            break
    _purge(connection, "status IN ('succeeded', 'cancelled')", now - result_ttl)
    if dead_ttl is not None:
        _purge(connection, "status = 'dead'", now - dead_ttl)
    return reclaimed


def _purge(connection: sqlite3.Connection, which: str, before: float) -> None:
    # The index's own WHERE term is repeated verbatim: SQLite uses a partial index only when
    # the query contains it (a narrower term alone does not count).
    statement = (
        "DELETE FROM jobs WHERE seq IN (SELECT seq FROM jobs INDEXED BY jobs_finished "
        f"WHERE {FINISHED} AND {which} AND finished_at < ? LIMIT ?)"
    )
    while True:
        with immediate(connection):
            deleted = connection.execute(statement, (before, REAP_CHUNK)).rowcount
        if deleted < REAP_CHUNK:
            return
