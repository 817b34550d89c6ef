"""Every SQL statement the PostgreSQL queue runs, one place, rendered for the queue's schema.

The lifecycle rules of :mod:`gaia.validator.core.lifecycle` are written here in SQL, each
transition ONE statement, so concurrent workers cannot interleave inside a rule:

- every settle (heartbeat, complete, retry, fail, release) is fenced: ``WHERE id = $1 AND
  lease_token = $2 AND status = 'running'``; a stale holder updates nothing;
- ``retry`` and ``reap`` enforce ``max_attempts`` themselves (dead instead of another attempt);
- the claim picks and locks the next ``$4`` rows with ``FOR UPDATE SKIP LOCKED`` inside the
  UPDATE, which finds them again by ``ctid`` (the locked versions cannot move before the UPDATE
  of the same statement; a join on the primary key cost an index descent per row, about a fifth
  of the claim's server CPU) and returns them in no particular order: the claimer sorts them
  (``priority`` DESC, ``not_before``, ``seq``);
- ``reap`` reclaims every expired lease in one statement;
- ``complete_and_claim`` completes a batch (fenced like ``complete_batch``) and claims the next
  jobs (like ``claim``) in ONE statement: the two touch disjoint rows (running ones, claimable
  ones) and commit together, so the new jobs are held only once the finished ones are recorded.
  Rows with ``done_id`` set are completions, the others claimed jobs.

Parameters are numbered ($1, ...) and bound by asyncpg, which prepares and caches each statement
per connection.
"""

from __future__ import annotations

from dataclasses import dataclass

CLAIMABLE = "('queued', 'retry_scheduled')"
ACTIVE = "('queued', 'running', 'retry_scheduled')"
TERMINAL = "('succeeded', 'cancelled', 'dead')"

COLUMNS: tuple[str, ...] = (
    "id",
    "type",
    "payload",
    "metadata",
    "priority",
    "status",
    "attempts",
    "max_attempts",
    "not_before",
    "dedupe_key",
    "timeout",
    "memory_mb",
    "correlation_id",
    "created_at",
    "updated_at",
    "started_at",
    "finished_at",
    "lease_token",
    "lease_expires_at",
    "worker_id",
    "error",
    "result",
    "progress",
)
"""The stored job fields; their names are the codec's record keys."""

DOCUMENT_COLUMNS = frozenset({"payload", "metadata"})
"""Sent to ``insert_many`` as ONE JSON array each (one encoder call per batch, not per job)."""

_ARRAY_TYPES = {
    "id": "text",
    "type": "text",
    "payload": "jsonb",
    "metadata": "jsonb",
    "priority": "int4",
    "status": "text",
    "attempts": "int4",
    "max_attempts": "int4",
    "not_before": "float8",
    "dedupe_key": "text",
    "timeout": "float8",
    "memory_mb": "int4",
    "correlation_id": "text",
    "created_at": "float8",
    "updated_at": "float8",
    "started_at": "float8",
    "finished_at": "float8",
    "lease_token": "int8",
    "lease_expires_at": "float8",
    "worker_id": "text",
    "error": "jsonb",
    "result": "jsonb",
    "progress": "jsonb",
}

@dataclass(frozen=True)
class Statements:
    """The statements for one schema. Build with :func:`statements_for`."""

    insert_one: str
    insert_many: str
    insert_new_one: str
    insert_new_many: str
    find_stored: str
    claim_any: str
    claim_types: str
    next_due_any: str
    next_due_types: str
    quarantine: str
    heartbeat: str
    complete: str
    complete_batch: str
    complete_and_claim_any: str
    complete_and_claim_types: str
    retry: str
    fail: str
    release: str
    cancel: str
    requeue: str
    dedupe_holder: str
    get: str
    list_jobs: str
    stats_counts: str
    stats_ages: str
    reap_expired: str
    purge_finished: str


def statements_for(schema: str) -> Statements:
    """Render every statement for ``schema`` (a name already validated by the options parser)."""
    jobs = '"' + schema + '".jobs'
    cols = ", ".join(COLUMNS)
    returning = f"RETURNING {cols}"
    placeholders = ", ".join(f"${n}" for n in range(1, len(COLUMNS) + 1))
    arrays = ", ".join(
        f"jsonb_array_elements(${n}::text::jsonb)"
        if name in DOCUMENT_COLUMNS
        else f"unnest(${n}::{_ARRAY_TYPES[name]}[])"
        for n, name in enumerate(COLUMNS, start=1)
    )
    insert_rows = (
        f"INSERT INTO {jobs} ({cols}) SELECT {cols} FROM ROWS FROM ({arrays})"
        f" WITH ORDINALITY AS batch({cols}, ordinal) ORDER BY ordinal"
    )
    fenced = "WHERE id = $1::text AND lease_token = $2::int8 AND status = 'running'"
    next_due = (
        f"SELECT not_before FROM {jobs} WHERE status IN {CLAIMABLE}{{types}}"
        " ORDER BY -not_before DESC LIMIT 1"
    )
    exhausted = "$5::bool AND attempts >= max_attempts"
    picked = (
        f"picked AS (SELECT ctid FROM {jobs}"
        f"  WHERE status IN {CLAIMABLE} AND not_before <= $1::float8{{types}}"
        "  ORDER BY priority DESC, not_before, seq LIMIT $4::int8 FOR UPDATE SKIP LOCKED)"
    )
    claim_update = (
        f"UPDATE {jobs} AS j SET status = 'running', attempts = j.attempts + 1,"
        " lease_token = j.lease_token + 1, lease_expires_at = $1::float8 + $2::float8,"
        " worker_id = $3::text, started_at = $1::float8, progress = NULL,"
        " updated_at = $1::float8 WHERE j.ctid = ANY(ARRAY(SELECT ctid FROM picked))"
        f" RETURNING j.seq, {', '.join('j.' + name for name in COLUMNS)}"
    )
    claim = f"WITH {picked} {claim_update}"
    complete_set = (
        "status = 'succeeded', result = done.result::jsonb,"
        " finished_at = $1::float8, updated_at = $1::float8, lease_expires_at = NULL"
    )
    complete_match = (
        "j.id = done.id AND j.lease_token = done.token AND j.status = 'running'"
        " RETURNING j.id, j.lease_token, j.progress"
    )
    complete_and_claim = (
        f"WITH completed AS (UPDATE {jobs} AS j SET {complete_set}"
        " FROM unnest($5::text[], $6::int8[], $7::text[]) AS done(id, token, result)"
        f" WHERE {complete_match}), {picked}, claimed AS ({claim_update})"
        " SELECT NULL::text AS done_id, NULL::int8 AS done_token, NULL::jsonb AS done_progress,"
        " claimed.* FROM claimed UNION ALL SELECT id::text, lease_token, progress"
        + ", NULL" * (len(COLUMNS) + 1)
        + " FROM completed"
    )
    expired = "j.attempts >= j.max_attempts"
    return Statements(
        insert_one=(
            f"INSERT INTO {jobs} ({cols}) VALUES ({placeholders}) "
            "ON CONFLICT DO NOTHING RETURNING id"
        ),
        insert_many=(
            f"WITH inserted AS ({insert_rows} ON CONFLICT DO NOTHING RETURNING id)"
            " SELECT coalesce(array_agg(id), '{}') FROM inserted"
        ),
        insert_new_one=f"INSERT INTO {jobs} ({cols}) VALUES ({placeholders})",
        insert_new_many=insert_rows,
        find_stored=(
            f"SELECT {cols} FROM {jobs} WHERE id = ANY($1::text[]) UNION ALL "
            f"SELECT {cols} FROM {jobs} WHERE dedupe_key = ANY($2::text[]) AND status IN {ACTIVE}"
        ),
        claim_any=claim.format(types=""),
        claim_types=claim.format(types=" AND type = ANY($5::text[])"),
        next_due_any=next_due.format(types=""),
        next_due_types=next_due.format(types=" AND type = ANY($1::text[])"),
        quarantine=(
            f"UPDATE {jobs} SET status = 'dead', error = $3::jsonb, finished_at = $4::float8,"
            " updated_at = $4::float8, lease_expires_at = NULL, progress = NULL,"
            " payload = CASE WHEN jsonb_typeof(payload) = 'object' THEN payload"
            " ELSE jsonb_build_object('invalid_payload', payload) END,"
            " metadata = CASE WHEN jsonb_typeof(metadata) = 'object' THEN metadata"
            " ELSE jsonb_build_object('invalid_metadata', metadata) END"
            f" {fenced} RETURNING id"
        ),
        heartbeat=(
            f"UPDATE {jobs} SET lease_expires_at = $3::float8 + $4::float8,"
            f" updated_at = $3::float8, progress = coalesce($5::jsonb, progress)"
            f" {fenced} {returning}"
        ),
        complete=(
            f"UPDATE {jobs} SET status = 'succeeded', result = $3::jsonb,"
            " finished_at = $4::float8, updated_at = $4::float8, lease_expires_at = NULL"
            f" {fenced} {returning}"
        ),
        complete_batch=(
            f"UPDATE {jobs} AS j SET {complete_set}"
            " FROM unnest($2::text[], $3::int8[], $4::text[]) AS done(id, token, result)"
            f" WHERE {complete_match}"
        ),
        complete_and_claim_any=complete_and_claim.format(types=""),
        complete_and_claim_types=complete_and_claim.format(types=" AND type = ANY($8::text[])"),
        retry=(
            f"UPDATE {jobs} SET"
            f" status = CASE WHEN {exhausted} THEN 'dead' ELSE 'retry_scheduled' END,"
            " attempts = CASE WHEN $5::bool THEN attempts ELSE greatest(attempts - 1, 0) END,"
            f" not_before = CASE WHEN {exhausted} THEN not_before"
            " ELSE greatest($6::float8, $4::float8) END,"
            f" error = CASE WHEN {exhausted} THEN coalesce($3::jsonb, $7::jsonb)"
            " ELSE coalesce($3::jsonb, error) END,"
            f" finished_at = CASE WHEN {exhausted} THEN $4::float8 ELSE finished_at END,"
            f" updated_at = $4::float8, lease_expires_at = NULL {fenced} {returning}"
        ),
        fail=(
            f"UPDATE {jobs} SET status = 'dead', error = $3::jsonb, finished_at = $4::float8,"
            f" updated_at = $4::float8, lease_expires_at = NULL {fenced} {returning}"
        ),
        release=(
            f"UPDATE {jobs} SET status = 'queued', attempts = greatest(attempts - 1, 0),"
            " lease_expires_at = NULL, worker_id = NULL,"
            " not_before = least(not_before, $3::float8), updated_at = $3::float8"
            f" {fenced} {returning}"
        ),
        cancel=(
            f"UPDATE {jobs} SET status = 'cancelled', finished_at = $2::float8,"
            " updated_at = $2::float8, lease_expires_at = NULL"
            f" WHERE id = $1::text AND status IN {ACTIVE} {returning}"
        ),
        requeue=(
            f"UPDATE {jobs} SET status = 'queued', attempts = 0, not_before = $2::float8,"
            " finished_at = NULL, worker_id = NULL, updated_at = $2::float8"
            f" WHERE id = $1::text AND status = 'dead' {returning}"
        ),
        dedupe_holder=(
            f"SELECT id FROM {jobs} WHERE dedupe_key = $1::text AND status IN {ACTIVE}"
        ),
        get=f"SELECT {cols} FROM {jobs} WHERE id = $1::text",
        list_jobs=(
            f"SELECT {cols} FROM {jobs} WHERE ($1::text IS NULL OR status = $1::text)"
            " AND ($2::text IS NULL OR type = $2::text) ORDER BY created_at, seq LIMIT $3::int8"
        ),
        stats_counts=f"SELECT type, status, count(*) AS n FROM {jobs} GROUP BY type, status",
        stats_ages=(
            f"SELECT (SELECT first.not_before FROM ({next_due.format(types='')}) AS first"
            "  WHERE first.not_before <= $1::float8) AS oldest_due,"
            f" (SELECT count(*) FROM {jobs}"
            "  WHERE status = 'running' AND lease_expires_at < $1::float8) AS expired"
        ),
        reap_expired=(
            f"WITH expired AS (SELECT id FROM {jobs} WHERE status = 'running'"
            "  AND lease_expires_at < $1::float8 FOR UPDATE SKIP LOCKED),"
            f" reclaimed AS (UPDATE {jobs} AS j SET"
            f"  status = CASE WHEN {expired} THEN 'dead' ELSE 'queued' END,"
            "  error = jsonb_build_object('message', 'lease expired at '"
            "   || to_char(j.lease_expires_at, 'FM999999999999990.000')"
            "   || ' while held by worker ' || coalesce(j.worker_id, 'None'),"
            "   'kind', 'lease_expired', 'traceback', NULL),"
            f"  worker_id = CASE WHEN {expired} THEN j.worker_id END,"
            f"  not_before = CASE WHEN {expired} THEN j.not_before"
            "   ELSE least(j.not_before, $1::float8) END,"
            f"  finished_at = CASE WHEN {expired} THEN $1::float8 END,"
            "  lease_expires_at = NULL, updated_at = $1::float8"
            "  FROM expired WHERE j.id = expired.id AND j.status = 'running' RETURNING 1)"
            " SELECT count(*) FROM reclaimed"
        ),
        purge_finished=(
            f"WITH doomed AS (SELECT id FROM {jobs} WHERE status IN {TERMINAL}"
            "  AND finished_at < greatest($1::float8, $2::float8)"
            "  AND finished_at < CASE WHEN status = 'dead' THEN $2::float8 ELSE $1::float8 END"
            "  LIMIT $3::int8 FOR UPDATE SKIP LOCKED),"
            f" gone AS (DELETE FROM {jobs} AS j USING doomed WHERE j.id = doomed.id RETURNING 1)"
            " SELECT count(*) FROM gone"
        ),
    )
