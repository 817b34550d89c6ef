"""PostgreSQL rows <-> jobs, without a server: the batch encoder and the plain-row decoder agree
with the core codec field by field."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from gaia.validator.core import CorruptJob, Job, JobError, Progress, lifecycle, new_job
from gaia.validator.core.codec import job_to_record
from gaia.validator.queues.postgres.rows import (
    completed_copy,
    decode_json,
    insert_arguments,
    insert_arrays,
    job_from_row,
)
from gaia.validator.queues.postgres.statements import COLUMNS, DOCUMENT_COLUMNS


def full_job(i: int) -> Job:
    """A job with every field set to something distinct."""
    job = new_job(
        "kind.full", {"i": i, "nested": [1, {"x": None}]}, metadata={"m": i}, priority=i,
        max_attempts=5, timeout=9.5, memory_mb=i, correlation_id=f"c{i}", dedupe_key=f"k{i}",
        now=1000.0 + i,
    )
    return replace(
        job, attempts=1, started_at=1.5 + i, finished_at=2.5 + i, lease_token=7 + i,
        lease_expires_at=3.5 + i, worker_id=f"w{i}", error=JobError("e", "k", "tb"),
        result={"r": i}, progress=Progress(1, 2, "p"),
    )


def test_batch_arrays_follow_the_column_order() -> None:
    jobs = [full_job(i) for i in range(3)]
    arrays = insert_arrays(jobs)
    assert len(arrays) == len(COLUMNS)
    for position, name in enumerate(COLUMNS):
        column = arrays[position]
        if name in DOCUMENT_COLUMNS:
            assert isinstance(column, str)
            column = json.loads(column)
        assert column == [insert_arguments(job)[position] for job in jobs], name


def test_row_decoding_matches_the_codec() -> None:
    plain = new_job("kind.plain", {"a": 1}, now=5.0)
    assert job_from_row(job_to_record(plain)) == plain  # the direct path
    full = full_job(1)
    assert job_from_row(job_to_record(full)) == full  # error and progress: the codec path


def test_a_bad_row_is_refused_by_name() -> None:
    record = job_to_record(new_job("kind.plain", {"a": 1}, now=5.0))
    record["payload"] = "text"
    with pytest.raises(CorruptJob, match="payload"):
        job_from_row(record)
    record = job_to_record(new_job("kind.plain", {"a": 1}, now=5.0))
    record["max_attempts"] = 0
    with pytest.raises(CorruptJob, match="max_attempts"):
        job_from_row(record)


def test_completed_copy_is_the_lifecycle_rule() -> None:
    running = lifecycle.claimed(new_job("kind.plain", {"a": 1}, now=5.0), "w", 6.0, 30.0)
    assert completed_copy(running, 7.0, [1, 2]) == lifecycle.completed(running, 7.0, [1, 2])
    assert running.status.value == "running"  # the original is untouched


def test_json_decoding_matches_the_standard_parser() -> None:
    for text in ("{}", '{"a": [1, 2.5, null, true]}', "[]", '"s"', "3", "null"):
        assert decode_json(text) == json.loads(text)
    first, second = decode_json("{}"), decode_json("{}")
    assert isinstance(first, dict)
    first["x"] = 1
    assert second == {}, "each empty object is a new dict"
    with pytest.raises(ValueError):
        decode_json("{not json")


def test_direct_decoding_still_validates_the_job() -> None:
    record = job_to_record(new_job("kind.plain", {"a": 1}, now=5.0))
    record["type"] = "Not A Type"  # only a writer bypassing the table's domains could store it
    with pytest.raises(CorruptJob, match="type"):
        job_from_row(record)
