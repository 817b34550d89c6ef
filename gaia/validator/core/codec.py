"""Job <-> JSON record. Backends store exactly this; nothing is ever pickled.

Decoding is strict: a record written by hand or damaged in a backend raises :class:`CorruptJob`
naming the bad field, so the backend can dead-letter it instead of crashing a worker.
"""

from __future__ import annotations

import json

from gaia.validator.core.errors import CorruptJob
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONObject, JSONValue
from gaia.validator.core.status import JobStatus


def job_to_record(job: Job) -> JSONObject:
    return {
        "id": job.id,
        "type": job.type,
        "payload": job.payload,
        "metadata": job.metadata,
        "priority": job.priority,
        "status": job.status.value,
        "attempts": job.attempts,
        "max_attempts": job.max_attempts,
        "not_before": job.not_before,
        "dedupe_key": job.dedupe_key,
        "timeout": job.timeout,
        "memory_mb": job.memory_mb,
        "correlation_id": job.correlation_id,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "lease_token": job.lease_token,
        "lease_expires_at": job.lease_expires_at,
        "worker_id": job.worker_id,
        "error": error_to_record(job.error),
        "result": job.result,
        "progress": progress_to_record(job.progress),
    }


def error_to_record(error: JobError | None) -> JSONValue:
    if error is None:
        return None
    return {"message": error.message, "kind": error.kind, "traceback": error.traceback}


def progress_to_record(progress: Progress | None) -> JSONValue:
    if progress is None:
        return None
    return {"done": progress.done, "total": progress.total, "message": progress.message}


def encode_job(job: Job) -> str:
    return json.dumps(job_to_record(job), separators=(",", ":"), allow_nan=False)


def decode_job(data: str | bytes) -> Job:
    try:
        record = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise CorruptJob(f"job record must be a JSON object, got {type(record).__name__}")
    return job_from_record(record)


def job_from_record(record: JSONObject) -> Job:
    r = _Reader(record)
    try:
        status = JobStatus(r.text("status"))
    except ValueError:
        raise CorruptJob(
            f"job record field 'status' has unknown value {record['status']!r}"
        ) from None
    try:
        return Job(
            id=r.text("id"),
            type=r.text("type"),
            payload=r.mapping("payload"),
            metadata=r.mapping("metadata"),
            priority=r.integer("priority"),
            status=status,
            attempts=r.integer("attempts"),
            max_attempts=r.integer("max_attempts"),
            not_before=r.number("not_before"),
            dedupe_key=r.opt_text("dedupe_key"),
            timeout=r.number("timeout"),
            memory_mb=r.integer("memory_mb"),
            correlation_id=r.text("correlation_id"),
            created_at=r.number("created_at"),
            updated_at=r.number("updated_at"),
            started_at=r.opt_number("started_at"),
            finished_at=r.opt_number("finished_at"),
            lease_token=r.integer("lease_token"),
            lease_expires_at=r.opt_number("lease_expires_at"),
            worker_id=r.opt_text("worker_id"),
            error=_error(record.get("error")),
            result=record.get("result"),
            progress=_progress(record.get("progress")),
        )
    except ValueError as exc:
        raise CorruptJob(f"job record {record.get('id')!r} is invalid: {exc}") from None


def _error(value: JSONValue) -> JobError | None:
    if value is None:
        return None
    r = _Reader(value if isinstance(value, dict) else {"message": value})
    return JobError(
        message=r.text("message"), kind=r.text("kind"), traceback=r.opt_text("traceback")
    )


def _progress(value: JSONValue) -> Progress | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise CorruptJob("job record field 'progress' must be an object or null")
    r = _Reader(value)
    return Progress(done=r.number("done"), total=r.opt_number("total"), message=r.text("message"))


class _Reader:
    """Typed field access that names the missing or mistyped field."""

    def __init__(self, record: JSONObject) -> None:
        self._record = record

    def _get(self, name: str) -> JSONValue:
        if name not in self._record:
            raise CorruptJob(f"job record lacks field {name!r}")
        return self._record[name]

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise CorruptJob(f"job record field {name!r} must be a string, got {value!r}")
        return value

    def opt_text(self, name: str) -> str | None:
        return None if self._record.get(name) is None else self.text(name)

    def integer(self, name: str) -> int:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int):
            raise CorruptJob(f"job record field {name!r} must be an integer, got {value!r}")
        return value

    def number(self, name: str) -> float:
        value = self._get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CorruptJob(f"job record field {name!r} must be a number, got {value!r}")
        return float(value)

    def opt_number(self, name: str) -> float | None:
        return None if self._record.get(name) is None else self.number(name)

    def mapping(self, name: str) -> JSONObject:
        value = self._get(name)
        if not isinstance(value, dict):
            raise CorruptJob(f"job record field {name!r} must be an object, got {value!r}")
        return value
