"""Rows <-> jobs: a stored row is decoded by the core codec, so a bad one raises CorruptJob."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import fields
from typing import Any

from gaia.validator.core.codec import (
    error_to_record,
    job_from_record,
    job_to_record,
    progress_to_record,
)
from gaia.validator.core.errors import CorruptJob
from gaia.validator.core.job import Job, JobError
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.postgres.statements import COLUMNS

CORRUPT_KIND = "corrupt_record"
_STATUSES = {status.value: status for status in JobStatus}


_DIRECT = frozenset(field.name for field in fields(Job)) == frozenset(COLUMNS)
"""Whether a row holds every Job field, so that the direct path below builds the whole job."""


def job_from_row(row: Mapping[str, Any]) -> Job:
    """Decode a row selected with :data:`COLUMNS`; raise CorruptJob naming the bad field.

    The scalar columns are typed and checked by the table's domains, so the common row (payload
    and metadata objects, no error, no progress) is built directly: the fields are set as they
    are and the Job's own ``__post_init__`` validation runs, at a fifth of the cost of the
    dataclass constructor (8 us). Anything else goes through the core codec, field by field.
    """
    payload, metadata = row["payload"], row["metadata"]
    if (
        _DIRECT
        and type(payload) is dict
        and type(metadata) is dict
        and row["error"] is None
        and row["progress"] is None
    ):
        job = object.__new__(Job)
        values = job.__dict__
        for name in COLUMNS:
            values[name] = row[name]
        try:
            values["status"] = _STATUSES[values["status"]]
            job.__post_init__()
            return job
        except (KeyError, ValueError):
            pass  # let the codec name what is wrong
    return job_from_record({name: row[name] for name in COLUMNS})


def completed_copy(job: Job, now: float, result: JSONValue) -> Job:
    """``lifecycle.completed(job, now, result)`` without re-validating the job.

    For the hot path only: ``job`` was validated when its row was decoded, and these are the
    exact fields the database's completion just set (the state machine allows running ->
    succeeded), so a field-by-field copy is the stored row at a fraction of ``replace``'s cost.
    """
    copied = object.__new__(Job)
    fields = copied.__dict__
    fields.update(job.__dict__)
    fields["status"] = JobStatus.SUCCEEDED
    fields["result"] = result
    fields["finished_at"] = now
    fields["updated_at"] = now
    fields["lease_expires_at"] = None
    return copied


def insert_arguments(job: Job) -> list[object]:
    """One job as the positional arguments of ``insert_one`` (column order)."""
    record = job_to_record(job)
    return [record[name] for name in COLUMNS]


def insert_arrays(jobs: Sequence[Job]) -> list[object]:
    """Jobs as the arguments of ``insert_many``, in COLUMNS order: one array per column, except
    payload and metadata, each sent as one JSON array text (statements.DOCUMENT_COLUMNS)."""
    return [
        [job.id for job in jobs],
        [job.type for job in jobs],
        encode_json([job.payload for job in jobs]),
        encode_json([job.metadata for job in jobs]),
        [job.priority for job in jobs],
        [job.status.value for job in jobs],
        [job.attempts for job in jobs],
        [job.max_attempts for job in jobs],
        [job.not_before for job in jobs],
        [job.dedupe_key for job in jobs],
        [job.timeout for job in jobs],
        [job.memory_mb for job in jobs],
        [job.correlation_id for job in jobs],
        [job.created_at for job in jobs],
        [job.updated_at for job in jobs],
        [job.started_at for job in jobs],
        [job.finished_at for job in jobs],
        [job.lease_token for job in jobs],
        [job.lease_expires_at for job in jobs],
        [job.worker_id for job in jobs],
        [error_to_record(job.error) for job in jobs],
        [job.result for job in jobs],
        [progress_to_record(job.progress) for job in jobs],
    ]


def error_value(error: JobError | None) -> JSONValue:
    """A JobError as the JSONB value stored in the ``error`` column (None -> SQL NULL)."""
    return error_to_record(error)


def corrupt_error(job_id: object, problem: CorruptJob) -> JSONValue:
    """The error stored on a record that could not be decoded and was dead-lettered."""
    return error_to_record(
        JobError(f"invalid job record {job_id!r} dead-lettered at claim: {problem}", CORRUPT_KIND)
    )


_decode = json.JSONDecoder().decode


def decode_json(text: str) -> JSONValue:
    """The JSONB codec's decoder: ``json.loads`` without its argument checks, and an empty
    object (most metadata) without the parser."""
    return {} if text == "{}" else _decode(text)


def encode_json(value: object) -> str:
    """The JSONB codec's encoder: strict JSON, no NaN, compact."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)

