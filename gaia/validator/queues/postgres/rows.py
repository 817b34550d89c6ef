"""Rows <-> jobs: a stored row is decoded by the core codec, so a bad one raises CorruptJob."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from gaia.validator.core.codec import error_to_record, job_from_record, job_to_record
from gaia.validator.core.errors import CorruptJob
from gaia.validator.core.job import Job, JobError
from gaia.validator.core.json_value import JSONValue
from gaia.validator.queues.postgres.statements import COLUMNS

CORRUPT_KIND = "corrupt_record"


def job_from_row(row: Mapping[str, object]) -> Job:
    """Decode a row selected with :data:`COLUMNS`; raise CorruptJob naming the bad field."""
    return job_from_record({name: row[name] for name in COLUMNS})  # type: ignore[misc]


def insert_arguments(job: Job) -> list[object]:
    """One job as the positional arguments of ``insert_one`` (column order)."""
    record = job_to_record(job)
    return [record[name] for name in COLUMNS]


def insert_arrays(jobs: Sequence[Job]) -> list[list[object]]:
    """Jobs as one array per column, the arguments of ``insert_many``."""
    records = [job_to_record(job) for job in jobs]
    return [[record[name] for record in records] for name in COLUMNS]


def error_value(error: JobError | None) -> JSONValue:
    """A JobError as the JSONB value stored in the ``error`` column (None -> SQL NULL)."""
    return error_to_record(error)


def corrupt_error(job_id: object, problem: CorruptJob) -> JSONValue:
    """The error stored on a record that could not be decoded and was dead-lettered."""
    return error_to_record(
        JobError(f"invalid job record {job_id!r} dead-lettered at claim: {problem}", CORRUPT_KIND)
    )


def encode_json(value: object) -> str:
    """The JSONB codec's encoder: strict JSON, no NaN, compact."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False)
