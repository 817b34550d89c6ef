"""A job record as a Redis hash, and back.

The hash holds ``spec``, the whole record as JSON at enqueue time (the core codec's record), and
*overlay* fields: the ones the Lua scripts read or change, stored as plain text so a script
never has to re-encode JSON (Redis's cjson would round floats to 14 digits and turn ``[]`` into
``{}``). Decoding takes ``spec`` and lays the overlay fields over it. An empty overlay value means
null. Floats are written by Python's ``repr`` and copied verbatim by the scripts, so they survive
exactly.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import replace

from gaia.validator.core.codec import encode_job, error_to_record, job_from_record
from gaia.validator.core.errors import CorruptJob
from gaia.validator.core.job import Job, JobError, Progress
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.status import JobStatus


def _integer(text: str) -> JSONValue:
    return int(text)


def _number(text: str) -> JSONValue:
    return None if text == "" else float(text)


def _text(text: str) -> JSONValue:
    return None if text == "" else text


def _json(text: str) -> JSONValue:
    decoded: JSONValue = None if text == "" else json.loads(text)
    return decoded


# hash field -> (record field, parser of the stored text)
OVERLAY: dict[str, tuple[str, Callable[[str], JSONValue]]] = {
    "type": ("type", _text),
    "status": ("status", _text),
    "priority": ("priority", _integer),
    "max_attempts": ("max_attempts", _integer),
    "attempts": ("attempts", _integer),
    "lease_token": ("lease_token", _integer),
    "not_before": ("not_before", _number),
    "updated_at": ("updated_at", _number),
    "started_at": ("started_at", _number),
    "finished_at": ("finished_at", _number),
    "lease_expires_at": ("lease_expires_at", _number),
    "worker_id": ("worker_id", _text),
    "dedupe": ("dedupe_key", _text),
    "error": ("error", _json),
    "result": ("result", _json),
    "progress": ("progress", _json),
}
_OVERLAY_BYTES = {name.encode(): entry for name, entry in OVERLAY.items()}
FIELDS_PER_JOB = 9


def number_text(value: float) -> str:
    """Exact text of a finite float (``repr`` round-trips); refuses NaN and infinities."""
    if value != value or value in (float("inf"), float("-inf")):
        raise ValueError(f"time {value!r} must be a finite number of seconds")
    return repr(float(value))


def enqueue_fields(job: Job) -> list[str]:
    """The FIELDS_PER_JOB arguments the enqueue script reads for one job, in its order."""
    return [
        job.id,
        job.type,
        str(job.priority),
        str(job.max_attempts),
        job.dedupe_key or "",
        str(job.attempts),
        str(job.lease_token),
        number_text(job.not_before),
        encode_job(job),
    ]


def json_text(value: JSONValue) -> str:
    """Strict JSON (no NaN), for results, errors and progress written by the scripts."""
    try:
        return json.dumps(value, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"value is not JSON-serialisable: {exc}") from None


def error_text(error: JobError | None) -> str:
    return "" if error is None else json_text(error_to_record(error))


def pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """``[k1, v1, k2, v2, ...]`` (a script's HGETALL) as a dict."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))


def decode_changes(job: Job, flat: list[bytes]) -> Job:
    """``job`` with the overlay fields a settling script returned (name, value, ...) laid on.

    A settling step never changes ``spec``, and while a lease holds only the fields the step
    wrote and those a heartbeat moves can differ from the lease's copy of the job; the script
    returns just those, which keeps the hot path short.
    """
    changes: dict[str, object] = {}
    try:
        for name, raw in zip(flat[0::2], flat[1::2], strict=True):
            field, parse = _OVERLAY_BYTES[name]
            changes[field] = _AS_ATTRIBUTE.get(field, _same)(parse(raw.decode()))
        return replace(job, **changes)  # type: ignore[arg-type]
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record {job.id} returned by a script is invalid: {exc}") from None


def _same(value: JSONValue) -> object:
    return value


def _as_status(value: JSONValue) -> JobStatus:
    if not isinstance(value, str):
        raise ValueError(f"status must be a string, got {value!r}")
    return JobStatus(value)


def _as_error(value: JSONValue) -> JobError | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"error must be an object, got {value!r}")
    message, kind, trace = value["message"], value["kind"], value.get("traceback")
    if not isinstance(message, str) or not isinstance(kind, str):
        raise ValueError(f"error message and kind must be strings, got {value!r}")
    if trace is not None and not isinstance(trace, str):
        raise ValueError(f"error traceback must be a string, got {trace!r}")
    return JobError(message, kind, trace)


def _as_progress(value: JSONValue) -> Progress | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"progress must be an object, got {value!r}")
    done, total, message = value["done"], value.get("total"), value.get("message", "")
    if not isinstance(done, int | float) or not isinstance(message, str):
        raise ValueError(f"progress is invalid: {value!r}")
    if total is not None and not isinstance(total, int | float):
        raise ValueError(f"progress total must be a number, got {total!r}")
    return Progress(float(done), None if total is None else float(total), message)


_AS_ATTRIBUTE: dict[str, Callable[[JSONValue], object]] = {
    "status": _as_status,
    "error": _as_error,
    "progress": _as_progress,
}


def decode_hash(fields: Mapping[bytes, bytes]) -> Job:
    """The job stored in ``fields``; raise CorruptJob naming what is wrong."""
    spec = fields.get(b"spec")
    if spec is None:
        raise CorruptJob("job record lacks its 'spec' field")
    try:
        record = json.loads(spec)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record is not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise CorruptJob(f"job record must be a JSON object, got {type(record).__name__}")
    for name, (field, parse) in _OVERLAY_BYTES.items():
        raw = fields.get(name)
        if raw is None:
            continue
        try:
            record[field] = parse(raw.decode())
        except (ValueError, UnicodeDecodeError):
            raise CorruptJob(
                f"job record field {name.decode()!r} is invalid: {raw[:80]!r}"
            ) from None
    return job_from_record(record)
