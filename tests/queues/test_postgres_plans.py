"""PostgreSQL backend: the claim and housekeeping statements use their indexes on a big queue.

EXPLAIN (not timing) proves it: with tens of thousands of queued rows, a claim reads the first
entries of the partial claim-order index instead of scanning and sorting the claimable rows, both
right after a burst of inserts (stale statistics) and after ANALYZE.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator, Callable

import asyncpg
import pytest

from gaia.validator.queues import open_queue
from gaia.validator.queues.postgres.connection import SESSION_SETTINGS, prepare_connection
from gaia.validator.queues.postgres.statements import statements_for

pytestmark = pytest.mark.postgres
ROWS = 30_000
SQL = statements_for("gaia_queue")


@pytest.fixture
async def big_queue(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A migrated queue holding ROWS queued jobs; yields a session configured like the pool's."""
    queue = await open_queue(postgres_url)
    await queue.close()
    connection = await asyncpg.connect(postgres_url, server_settings=SESSION_SETTINGS)
    await prepare_connection(connection)
    now = time.time()
    await connection.execute(
        "INSERT INTO gaia_queue.jobs (id, type, status, priority, not_before, attempts,"
        " max_attempts, lease_token, timeout, memory_mb, correlation_id, created_at, updated_at,"
        " payload, metadata)"
        " SELECT 'job-' || g, CASE WHEN g % 2 = 0 THEN 'kind.even' ELSE 'kind.odd' END, 'queued',"
        " g % 5, $1 - 100 + g * 0.001, 0, 3, 0, 60, 0, 'c', $1, $1, '{}', '{}'"
        f" FROM generate_series(1, {ROWS}) AS g",
        now,
    )
    try:
        yield connection
    finally:
        await connection.close()


async def plan_of(connection: asyncpg.Connection, sql: str, *args: object) -> dict[str, object]:
    text = await connection.fetchval(f"EXPLAIN (FORMAT JSON) {sql}", *args)
    plan: dict[str, object] = json.loads(text)[0]["Plan"]
    return plan


def nodes(plan: dict[str, object]) -> list[dict[str, object]]:
    found = [plan]
    for child in plan.get("Plans", []):  # type: ignore[union-attr]
        found += nodes(child)
    return found


def index_names(plan: dict[str, object]) -> set[str]:
    return {str(node["Index Name"]) for node in nodes(plan) if "Index Name" in node}


def node_types(plan: dict[str, object]) -> set[str]:
    return {str(node["Node Type"]) for node in nodes(plan)}


CLAIMS: list[tuple[str, str, Callable[[float], tuple[object, ...]]]] = [
    ("single", SQL.claim_any, lambda now: (now, 30.0, "w", 1)),
    ("single typed", SQL.claim_types, lambda now: (now, 30.0, "w", 1, ["kind.odd"])),
    ("batch", SQL.claim_any, lambda now: (now, 30.0, "w", 10)),
    ("batch typed", SQL.claim_types, lambda now: (now, 30.0, "w", 10, ["kind.even", "kind.odd"])),
    (
        "complete and claim",
        SQL.complete_and_claim_any,
        lambda now: (now, 30.0, "w", 10, ["job-1"], [1], [None]),
    ),
    (
        "complete and claim typed",
        SQL.complete_and_claim_types,
        lambda now: (now, 30.0, "w", 10, ["job-1"], [1], [None], ["kind.odd"]),
    ),
]


async def test_claims_walk_the_claim_order_index(big_queue: asyncpg.Connection) -> None:
    """Every claim statement, before and after ANALYZE, reads jobs_claim_order (no full scan,
    no bitmap scan: that would read every due row and sort them) and finds the locked rows again
    by ctid."""
    wrong = []
    for analyzed in (False, True):
        if analyzed:
            await big_queue.execute("ANALYZE gaia_queue.jobs")
        for label, sql, arguments in CLAIMS:
            plan = await plan_of(big_queue, sql, *arguments(time.time()))
            if (
                "jobs_claim_order" not in index_names(plan)
                or "Tid Scan" not in node_types(plan)
                or {"Seq Scan", "Bitmap Heap Scan"} & node_types(plan)
            ):
                wrong.append(f"{label} (analyzed={analyzed}):\n{json.dumps(plan, indent=1)}")
    assert not wrong, "\n".join(wrong)


GENERIC: list[tuple[str, str, str, str]] = [
    ("claim", SQL.claim_any, "float8, float8, text, int8", "{now}, 30, 'w', 2"),
    ("claim typed", SQL.claim_types, "float8, float8, text, int8, text[]",
     "{now}, 30, 'w', 2, ARRAY['kind.odd', 'kind.even']"),
    ("complete and claim", SQL.complete_and_claim_any,
     "float8, float8, text, int8, text[], int8[], text[]",
     "{now}, 30, 'w', 2, ARRAY['job-1'], ARRAY[1]::int8[], ARRAY[NULL]::text[]"),
    ("batch complete", SQL.complete_batch, "float8, text[], int8[], text[]",
     "{now}, ARRAY['job-1', 'job-2'], ARRAY[1, 1]::int8[], ARRAY[NULL, NULL]::text[]"),
    ("reap", SQL.reap_expired, "float8", "{now}"),
    ("find stored", SQL.find_stored, "text[], text[]", "ARRAY['job-1'], ARRAY['key']"),
    ("next due", SQL.next_due_any, "", ""),
    ("next due typed", SQL.next_due_types, "text[]", "ARRAY['kind.odd']"),
    ("get", SQL.get, "text", "'job-1'"),
    ("dedupe holder", SQL.dedupe_holder, "text", "'key'"),
    ("complete one", SQL.complete, "text, int8, jsonb, float8", "'job-1', 1, NULL, {now}"),
    ("stats ages", SQL.stats_ages, "float8", "{now}"),
    ("purge", SQL.purge_finished, "float8, float8, int8", "{now}, {now}, 100"),
]


async def test_generic_plans_stay_on_the_indexes(big_queue: asyncpg.Connection) -> None:
    """The queue's sessions use generic plans (plan_cache_mode = force_generic_plan: made once
    per connection, without the parameters' values); they must not scan the table either."""
    await big_queue.execute("ANALYZE gaia_queue.jobs")
    await big_queue.execute("SET plan_cache_mode = force_generic_plan")
    wrong = []
    for label, sql, types, arguments in GENERIC:
        declared = f"({types})" if types else ""
        bound = f"({arguments.format(now=time.time())})" if arguments else ""
        await big_queue.execute(f"PREPARE checked {declared} AS {sql}")
        text = await big_queue.fetchval(f"EXPLAIN (FORMAT JSON) EXECUTE checked {bound}")
        await big_queue.execute("DEALLOCATE checked")
        plan = json.loads(text)[0]["Plan"]
        if {"Seq Scan", "Bitmap Heap Scan", "Hash Join", "Merge Join"} & node_types(plan):
            wrong.append(f"{label}:\n{json.dumps(plan, indent=1)}")
    assert not wrong, "\n".join(wrong)


async def test_claim_takes_the_best_job_from_a_big_queue(big_queue: asyncpg.Connection) -> None:
    row = await big_queue.fetchrow(SQL.claim_any, time.time(), 30.0, "w", 1)
    # priority 4 is the highest (g % 5); among those the earliest not_before is g = 4
    assert row is not None and row["id"] == "job-4" and row["status"] == "running"


async def test_housekeeping_statements_use_their_partial_indexes(
    big_queue: asyncpg.Connection,
) -> None:
    await big_queue.execute("ANALYZE gaia_queue.jobs")
    now = time.time()
    assert "jobs_next_due" in index_names(await plan_of(big_queue, SQL.next_due_any))
    assert "jobs_lease_expiry" in index_names(await plan_of(big_queue, SQL.reap_expired, now))
    purge = await plan_of(big_queue, SQL.purge_finished, now - 86_400, float("-inf"), 10_000)
    assert "jobs_retention" in index_names(purge)
    lookup = await plan_of(big_queue, SQL.find_stored, ["job-1"], ["some-key"])
    assert {"jobs_pkey", "jobs_active_dedupe"} <= index_names(lookup)
    assert "Seq Scan" not in node_types(lookup)


async def test_dedupe_index_covers_every_active_state(big_queue: asyncpg.Connection) -> None:
    definition = await big_queue.fetchval(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'gaia_queue'"
        " AND indexname = 'jobs_active_dedupe'"
    )
    assert definition.startswith("CREATE UNIQUE INDEX")
    for status in ("queued", "running", "retry_scheduled"):
        assert f"'{status}'" in definition
    for status in ("succeeded", "dead", "cancelled"):
        assert f"'{status}'" not in definition
