"""Versioned schema migrations, applied on open: no hand-run SQL, safe to run from many processes.

``migrate`` runs in ONE transaction on ONE dedicated connection. It first takes a transaction-level
advisory lock (``pg_advisory_xact_lock``) keyed on the schema, so concurrent openers queue up behind
each other, and the lock is released by the commit or rollback on that same connection (never
leaked across pooled connections). It then applies, in order, every migration whose version is not
yet recorded in ``<schema>.schema_migrations``. A failure rolls everything back.

Migrations are append-only: never edit one that has shipped; add a new version instead.

Design notes for version 1 (the jobs table):
- One row per job, a column per job field; payload, metadata, result, error and progress are JSONB.
  Times are POSIX seconds (double precision) from the queue's injected clock, not ``now()``.
- CHECK constraints refuse every scalar the Job dataclass would refuse, so those cannot be corrupt.
  The JSON documents are checked by the codec when read; a bad one is dead-lettered at claim.
- ``jobs_claim_order`` is a partial index over claimable rows in claim order: a claim reads its
  first entry, however many jobs are queued. ``jobs_next_due`` finds when a waiting claimer must
  wake for a delayed job; it indexes ``-not_before`` on purpose, so that the planner cannot pick
  it for a claim (``not_before <= now``): with statistics still stale after a burst of enqueues,
  it would otherwise read every due row through it and sort them, instead of stopping at the first
  entries of ``jobs_claim_order``. ``jobs_active_dedupe`` is the unique partial index that
  enforces the dedupe key over every active state (the arbiter of ``INSERT ... ON CONFLICT
  DO NOTHING``).
- Triggers NOTIFY ``<schema>.claimable`` whenever rows become claimable (insert, retry, release,
  reap, requeue), whoever wrote them (since version 2: an UPDATE must set not_before, see below).
- Autovacuum runs early on this table: a queue turns its rows over fast, and dead index entries
  would otherwise slow the claim scan.

Version 2 moves the scalar checks from table CHECK constraints to domains. PostgreSQL evaluates
every CHECK constraint of a table on every UPDATE, whatever columns it sets, and first rebuilds
their expressions from the catalog for each statement: that was 12 % of the server's CPU in a
claim + complete cycle. A domain's check runs only when a value is written to its column (insert,
or an UPDATE that sets it), so the hot statements pay for ``status`` and ``attempts`` alone, and
any writer is still refused an impossible value. The upgrade rewrites the table under an
exclusive lock (about 6 s per million stored jobs on a small machine), once.

Version 2 also narrows the claimable trigger to ``UPDATE OF not_before``: every statement that
makes a job claimable (retry, release, reap, requeue) sets ``not_before``, while the claim and the
completion do not, and PostgreSQL then skips the trigger before rebuilding its WHEN clause from
the catalog (another 4 % of the server's CPU per claim + complete). A writer outside this module
that makes a job claimable must set ``not_before`` too (``SET not_before = not_before`` will do),
or waiting workers only see the job at their next timed re-check.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

SCHEMA_TOKEN = "{schema}"


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str
    """SQL with ``{schema}`` standing for the quoted schema name."""


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "jobs table, claim/dedupe/expiry/retention indexes, claimable notifications",
        r"""
CREATE TABLE {schema}.jobs (
    id               text PRIMARY KEY CHECK (id <> ''),
    seq              bigint GENERATED ALWAYS AS IDENTITY,
    type             text NOT NULL CHECK (type ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$'),
    status           text NOT NULL CHECK (status IN ('queued', 'running', 'succeeded',
                         'retry_scheduled', 'dead', 'cancelled')),
    priority         integer NOT NULL CHECK (priority BETWEEN -1000000 AND 1000000),
    not_before       double precision NOT NULL,
    attempts         integer NOT NULL CHECK (attempts >= 0),
    max_attempts     integer NOT NULL CHECK (max_attempts >= 1),
    lease_token      bigint NOT NULL,
    lease_expires_at double precision,
    worker_id        text,
    dedupe_key       text CHECK (dedupe_key <> ''),
    timeout          double precision NOT NULL CHECK (timeout > 0),
    memory_mb        integer NOT NULL CHECK (memory_mb >= 0),
    correlation_id   text NOT NULL,
    created_at       double precision NOT NULL,
    updated_at       double precision NOT NULL,
    started_at       double precision,
    finished_at      double precision,
    payload          jsonb NOT NULL,
    metadata         jsonb NOT NULL,
    error            jsonb,
    result           jsonb,
    progress         jsonb
) WITH (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_insert_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

CREATE INDEX jobs_claim_order ON {schema}.jobs (priority DESC, not_before, seq)
    WHERE status IN ('queued', 'retry_scheduled');
CREATE INDEX jobs_next_due ON {schema}.jobs ((-not_before))
    WHERE status IN ('queued', 'retry_scheduled');
CREATE UNIQUE INDEX jobs_active_dedupe ON {schema}.jobs (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'running', 'retry_scheduled');
CREATE INDEX jobs_lease_expiry ON {schema}.jobs (lease_expires_at)
    WHERE status = 'running';
CREATE INDEX jobs_retention ON {schema}.jobs (finished_at)
    WHERE status IN ('succeeded', 'cancelled', 'dead');

CREATE FUNCTION {schema}.notify_claimable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$$;

CREATE TRIGGER jobs_inserted AFTER INSERT ON {schema}.jobs
    FOR EACH STATEMENT EXECUTE FUNCTION {schema}.notify_claimable('{channel}');
CREATE TRIGGER jobs_became_claimable AFTER UPDATE ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.status IN ('queued', 'retry_scheduled'))
    EXECUTE FUNCTION {schema}.notify_claimable('{channel}');
""",
    ),
    Migration(
        2,
        "scalar checks as domains; the claimable trigger only on updates that set not_before",
        r"""
CREATE DOMAIN {schema}.job_id AS text CHECK (VALUE <> '');
CREATE DOMAIN {schema}.job_type AS text
    CHECK (VALUE ~ '^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*$');
CREATE DOMAIN {schema}.job_status AS text CHECK (VALUE IN ('queued', 'running', 'succeeded',
    'retry_scheduled', 'dead', 'cancelled'));
CREATE DOMAIN {schema}.job_priority AS integer CHECK (VALUE BETWEEN -1000000 AND 1000000);
CREATE DOMAIN {schema}.non_negative_int AS integer CHECK (VALUE >= 0);
CREATE DOMAIN {schema}.positive_int AS integer CHECK (VALUE >= 1);
CREATE DOMAIN {schema}.dedupe_key AS text CHECK (VALUE <> '');
CREATE DOMAIN {schema}.positive_seconds AS double precision CHECK (VALUE > 0);

DROP TRIGGER jobs_became_claimable ON {schema}.jobs;  -- its WHEN clause reads status
ALTER TABLE {schema}.jobs
    DROP CONSTRAINT jobs_id_check,
    DROP CONSTRAINT jobs_type_check,
    DROP CONSTRAINT jobs_status_check,
    DROP CONSTRAINT jobs_priority_check,
    DROP CONSTRAINT jobs_attempts_check,
    DROP CONSTRAINT jobs_max_attempts_check,
    DROP CONSTRAINT jobs_dedupe_key_check,
    DROP CONSTRAINT jobs_timeout_check,
    DROP CONSTRAINT jobs_memory_mb_check,
    ALTER COLUMN id TYPE {schema}.job_id,
    ALTER COLUMN type TYPE {schema}.job_type,
    ALTER COLUMN status TYPE {schema}.job_status,
    ALTER COLUMN priority TYPE {schema}.job_priority,
    ALTER COLUMN attempts TYPE {schema}.non_negative_int,
    ALTER COLUMN max_attempts TYPE {schema}.positive_int,
    ALTER COLUMN dedupe_key TYPE {schema}.dedupe_key,
    ALTER COLUMN timeout TYPE {schema}.positive_seconds,
    ALTER COLUMN memory_mb TYPE {schema}.non_negative_int;
CREATE TRIGGER jobs_became_claimable AFTER UPDATE OF not_before ON {schema}.jobs
    FOR EACH ROW WHEN (NEW.status IN ('queued', 'retry_scheduled'))
    EXECUTE FUNCTION {schema}.notify_claimable('{channel}');
""",
    ),
)


class SchemaTooNew(RuntimeError):
    """The database was migrated by a newer version of this code."""


def render(sql: str, schema: str, channel: str) -> str:
    """Substitute the quoted schema name and the notification channel into ``sql``."""
    quoted = '"' + schema.replace('"', '""') + '"'
    return sql.replace(SCHEMA_TOKEN, quoted).replace("{channel}", channel.replace("'", "''"))


async def migrate(connection: asyncpg.Connection, schema: str, channel: str) -> list[int]:
    """Bring ``schema`` up to the latest version; returns the versions applied now (may be [])."""
    quoted = render(SCHEMA_TOKEN, schema, channel)
    async with connection.transaction():
        await connection.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))", f"gaia.queue.migrate:{schema}"
        )
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {quoted}")
        await connection.execute(
            f"CREATE TABLE IF NOT EXISTS {quoted}.schema_migrations ("
            " version integer PRIMARY KEY, description text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        rows = await connection.fetch(f"SELECT version FROM {quoted}.schema_migrations")
        applied = {row["version"] for row in rows}
        latest = MIGRATIONS[-1].version
        if applied and max(applied) > latest:
            raise SchemaTooNew(
                f"schema {schema!r} is at version {max(applied)}, newer than this code knows "
                f"({latest}); upgrade gaia before opening this queue"
            )
        done: list[int] = []
        for migration in MIGRATIONS:
            if migration.version in applied:
                continue
            await connection.execute(render(migration.sql, schema, channel))
            await connection.execute(
                f"INSERT INTO {quoted}.schema_migrations (version, description) VALUES ($1, $2)",
                migration.version,
                migration.description,
            )
            done.append(migration.version)
        return done
