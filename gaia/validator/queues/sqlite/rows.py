"""Job <-> row of the ``jobs`` table: scalar fields in typed columns, JSON values as text.

Decoding goes through the core codec, so a row is held to exactly the rules of every other
backend; a damaged row raises :class:`CorruptJob` naming the job and the column.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from gaia.validator.core.codec import error_to_record, job_from_record, progress_to_record
from gaia.validator.core.errors import CorruptJob
from gaia.validator.core.job import Job
from gaia.validator.core.json_value import JSONObject, JSONValue

JOB_COLUMNS: tuple[str, ...] = (
    "id",
    "type",
    "status",
    "priority",
    "not_before",
    "attempts",
    "max_attempts",
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
    "payload",
    "metadata",
    "error",
    "result",
    "progress",
)
JSON_COLUMNS = frozenset({"payload", "metadata", "error", "result", "progress"})

SELECT_COLUMNS = "seq, " + ", ".join(JOB_COLUMNS)
"""What every job query selects: ``seq`` first, then :data:`JOB_COLUMNS` in order."""

SEQ = 0
ID = 1 + JOB_COLUMNS.index("id")
PRIORITY = 1 + JOB_COLUMNS.index("priority")
NOT_BEFORE = 1 + JOB_COLUMNS.index("not_before")

INSERT = (
    f"INSERT INTO jobs ({', '.join(JOB_COLUMNS)}) VALUES ({', '.join('?' for _ in JOB_COLUMNS)})"
)

MUTABLE_COLUMNS: tuple[str, ...] = (
    "status",
    "attempts",
    "not_before",
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
UPDATE = f"UPDATE jobs SET {', '.join(f'{c} = ?' for c in MUTABLE_COLUMNS)} WHERE seq = ?"

Param = str | int | float | None
Row = Sequence[Param]


def row_seq(row: Row) -> int:
    value = row[SEQ]
    assert isinstance(value, int)
    return value


def row_id(row: Row) -> str:
    value = row[ID]
    assert isinstance(value, str)
    return value


def claim_order(row: Row) -> tuple[int, float, int]:
    """Claim order of a row: higher priority, then earlier not_before, then enqueue order.

    Columns are STRICT-typed, so priority is an integer and not_before a real."""
    priority, not_before = row[PRIORITY], row[NOT_BEFORE]
    assert isinstance(priority, int) and isinstance(not_before, float)
    return (-priority, not_before, row_seq(row))


_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


def dump(value: JSONValue) -> str:
    """Compact JSON; NaN and infinities are refused (they are not JSON)."""
    if not value and isinstance(value, dict):
        return "{}"
    return _ENCODER.encode(value)


def _dump_optional(value: JSONValue) -> str | None:
    return None if value is None else dump(value)


def insert_params(job: Job) -> tuple[Param, ...]:
    return (
        job.id,
        job.type,
        job.status.value,
        job.priority,
        job.not_before,
        job.attempts,
        job.max_attempts,
        job.dedupe_key,
        job.timeout,
        job.memory_mb,
        job.correlation_id,
        job.created_at,
        job.updated_at,
        job.started_at,
        job.finished_at,
        job.lease_token,
        job.lease_expires_at,
        job.worker_id,
        dump(job.payload),
        dump(job.metadata),
        _dump_optional(error_to_record(job.error)),
        _dump_optional(job.result),
        _dump_optional(progress_to_record(job.progress)),
    )


def update_params(job: Job, seq: int) -> tuple[Param, ...]:
    return (
        job.status.value,
        job.attempts,
        job.not_before,
        job.updated_at,
        job.started_at,
        job.finished_at,
        job.lease_token,
        job.lease_expires_at,
        job.worker_id,
        _dump_optional(error_to_record(job.error)),
        _dump_optional(job.result),
        _dump_optional(progress_to_record(job.progress)),
        seq,
    )


def decode_row(row: Row) -> Job:
    """The job stored in ``row`` (selected with :data:`SELECT_COLUMNS`); raises CorruptJob."""
    record: JSONObject = {}
    for name, value in zip(JOB_COLUMNS, row[1:], strict=True):
        if name in JSON_COLUMNS and value is not None:
            record[name] = _load(row, name, value)
        else:
            record[name] = value
    try:
        return job_from_record(record)
    except CorruptJob as exc:
        raise CorruptJob(f"job {row[ID]!r}: {exc}") from None


def _load(row: Row, column: str, value: Param) -> JSONValue:
    if not isinstance(value, str):
        raise CorruptJob(f"job {row[ID]!r}: column {column!r} holds {type(value).__name__}")
    try:
        loaded: JSONValue = json.loads(value)
    except ValueError as exc:
        raise CorruptJob(f"job {row[ID]!r}: column {column!r} is not valid JSON ({exc})") from None
    return loaded


_SALVAGED: tuple[tuple[str, bool, str | None], ...] = (
    ("payload", True, "{}"),
    ("metadata", True, "{}"),
    ("result", False, None),
    ("error", False, None),
)
"""(column, must hold a JSON object, replacement when damaged)."""


def _parses(raw: object, want_object: bool) -> bool:
    if not isinstance(raw, str):
        return False
    try:
        value = json.loads(raw)
    except ValueError:
        return False
    return isinstance(value, dict) or not want_object


def salvage(row: Row) -> tuple[dict[str, str | None], JSONObject]:
    """For dead-lettering a corrupt row: replacement values for its damaged JSON columns (so
    the dead job can still be read and listed), and the raw values they replace, to be kept
    verbatim in the ``quarantine`` column for whoever investigates. Progress is dropped."""
    replacements: dict[str, str | None] = {"progress": None}
    quarantine: JSONObject = {}
    for name, want_object, replacement in _SALVAGED:
        raw = row[1 + JOB_COLUMNS.index(name)]
        if raw is None and not want_object:
            continue
        if not _parses(raw, want_object):
            replacements[name] = replacement
            quarantine[name] = raw
    progress = row[1 + JOB_COLUMNS.index("progress")]
    if progress is not None:
        quarantine["progress"] = progress
    return replacements, quarantine
