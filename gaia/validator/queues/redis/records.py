"""A job record as a Redis hash (stored format 2), and back.

Fields of the hash ``job:<id>``:

- ``spec``: JSON of the fields no step changes: id, payload, created_at, and metadata,
  dedupe_key, timeout, memory_mb, correlation_id unless they have their default value (empty,
  null, 300, 0, the id); and the enqueue-time ``error``, ``result`` and ``progress`` when not
  null. Leaving defaults out keeps it short: a claim sends it back and the client decodes it;
- ``state``: what a run changes, one line of space-separated text in the order of
  :data:`STATE_FIELDS`. Times are exact float text (Python's ``repr``, copied verbatim by the
  Lua functions, so they survive exactly; empty = null); ``worker_id`` has its spaces escaped
  (:func:`worker_text`), so no field holds one and a function finds fields with plain searches.
  The fields a complete keeps come first, the ones it rewrites last;
- ``info``: the small fields fixed at enqueue, one line in the order of :data:`INFO_FIELDS`
  (``seq`` is the enqueue sequence; ``dedupe`` is 1 when the job holds a dedupe key);
- ``error``, ``result``, ``progress``: JSON once a step set them (empty = null; absent = the
  value in ``spec``); ``dedupe``: the dedupe key, for the functions; ``corrupt_spec``,
  ``corrupt_state``, ``corrupt_info``: the original bytes of a record dead-lettered as
  undecodable.

A step reads and writes a line or two instead of a dozen fields: the Lua functions' cost is
mostly per argument, per reply value and per pattern matched. No value is ever re-encoded by
Lua (Redis's cjson would round floats to 14 digits and turn ``[]`` into ``{}``). Decoding is
strict: a field of the wrong type raises :class:`CorruptJob` naming it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping

from gaia.validator.core.codec import error_to_record, progress_to_record
from gaia.validator.core.errors import CorruptJob
from gaia.validator.core.job import (
    DEFAULT_TIMEOUT_SECONDS,
    Job,
    JobError,
    Progress,
    validate_job,
)
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.status import JobStatus


def _not_json(value: object) -> object:
    raise TypeError(f"{type(value).__name__} is not JSON-serialisable")


# The C encoder of the json module, made once: strict (no NaN), compact, ASCII-only. json.dumps
# and JSONEncoder.encode build it anew on every call.
_json_chunks: Callable[[object, int], list[str]] = json.encoder.c_make_encoder(  # type: ignore[attr-defined]
    None, _not_json, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, False
)
_scan: Callable[[str, int], tuple[JSONValue, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_INF = float("inf")
STATUSES = {status.value: status for status in JobStatus}
_NUMBERS = (int, float)
_NO_METADATA: dict[str, JSONValue] = {}  # marks a spec without metadata (each job gets its own {})
_JOB_FIELDS = frozenset(Job.__dataclass_fields__)


def decode_json(raw: bytes | str) -> JSONValue:
    """Strict JSON of ``raw``, as ``json.loads`` would read it (without its per-call setup)."""
    text = raw.decode() if isinstance(raw, bytes) else raw
    try:
        value: JSONValue
        value, end = _scan(text, 0)
    except StopIteration:
        raise ValueError(f"not JSON: {text[:80]!r}") from None
    if end != len(text):
        raise ValueError(f"extra data after JSON at {end}: {text[end : end + 40]!r}")
    return value


STATE_FIELDS = (
    "status",
    "attempts",
    "lease_token",
    "not_before",
    "started_at",
    "worker_id",
    "finished_at",
    "updated_at",
    "lease_expires_at",
)
"""The fields of the ``state`` line, in order (the Lua library reads the same layout)."""
INFO_FIELDS = ("type", "seq", "priority", "max_attempts", "dedupe")
"""The fields of the ``info`` line, in order."""


def number_text(value: float) -> str:
    """Exact text of a finite float (``repr`` round-trips); refuses NaN and infinities."""
    if value != value or value == _INF or value == -_INF:
        raise ValueError(f"time {value!r} must be a finite number of seconds")
    return repr(float(value))


def micros(value: float) -> str:
    """``value`` seconds in whole microseconds (rounded down), the score unit of the sorted sets
    of lease expiries and retention ends."""
    return str(int(value * 1_000_000))


def due_micros(not_before: float) -> str:
    """``not_before`` in whole microseconds as the ready order reads it: clamped to
    [0, 9.9e16] like ``order_member`` in the Lua library, which computes the same figure from
    the same float (so a member built on either side is the same)."""
    return str(max(0, min(int(not_before * 1_000_000), 99_000_000_000_000_000)))


def json_text(value: JSONValue) -> str:
    """Strict JSON (no NaN), for results, errors and progress written by the functions."""
    if value is None:
        return "null"
    try:
        return "".join(_json_chunks(value, 0))
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"value is not JSON-serialisable: {exc}") from None


def error_text(error: JobError | None) -> str:
    return "" if error is None else json_text(error_to_record(error))


def worker_text(worker_id: str | None) -> str:
    """``worker_id`` as the state line holds it: '%' and ' ' escaped ('' = none)."""
    if worker_id is None:
        return ""
    if " " in worker_id or "%" in worker_id:
        return worker_id.replace("%", "%25").replace(" ", "%20")
    return worker_id


def worker_from(text: str) -> str | None:
    """The worker id of a state line's ``worker_id`` field."""
    if "%" in text:
        return text.replace("%20", " ").replace("%25", "%")
    return text or None


def enqueue_arguments(job: Job) -> list[str]:
    """The arguments the enqueue function reads for one job (ENQUEUE_WIDTH), in its order: id,
    type, ready score, due time (:func:`due_micros`), dedupe key, spec, state line, and the
    info line after its type and seq (which the function fills in)."""
    spec: dict[str, JSONValue] = {
        "id": job.id,
        "payload": job.payload,
        "created_at": job.created_at,
    }
    if job.metadata:
        spec["metadata"] = job.metadata
    if job.dedupe_key is not None:
        spec["dedupe_key"] = job.dedupe_key
    if job.timeout != DEFAULT_TIMEOUT_SECONDS:
        spec["timeout"] = job.timeout
    if job.memory_mb:
        spec["memory_mb"] = job.memory_mb
    if job.correlation_id != job.id:
        spec["correlation_id"] = job.correlation_id
    if job.error is not None:
        spec["error"] = error_to_record(job.error)
    if job.result is not None:
        spec["result"] = job.result
    if job.progress is not None:
        spec["progress"] = progress_to_record(job.progress)
    try:
        text = "".join(_json_chunks(spec, 0))
        not_before = number_text(job.not_before)
    except (TypeError, ValueError, RecursionError) as exc:
        raise TypeError(f"job {job.id} cannot be stored: {exc}") from None
    updated = not_before if job.updated_at == job.not_before else repr(job.updated_at)
    started, finished, expires = job.started_at, job.finished_at, job.lease_expires_at
    return [
        job.id,
        job.type,
        str(-job.priority),
        due_micros(job.not_before),
        job.dedupe_key or "",
        text,
        f"queued {job.attempts} {job.lease_token} {not_before} "
        f"{'' if started is None else repr(started)} {worker_text(job.worker_id)} "
        f"{'' if finished is None else repr(finished)} {updated} "
        f"{'' if expires is None else repr(expires)}",
        f"{job.priority} {job.max_attempts} {0 if job.dedupe_key is None else 1}",
    ]


def enqueue_resp(job: Job) -> str:
    """RESP text of :func:`enqueue_arguments` (``ENQUEUE_WIDTH`` bulk strings), made in one
    format when every word is ASCII (the spec always is); the caller encodes the text of a
    whole group at once."""
    job_id, job_type, score, due, dedupe, spec, state, info = enqueue_arguments(job)
    if job_id.isascii() and dedupe.isascii() and state.isascii():
        return (
            f"${len(job_id)}\r\n{job_id}\r\n${len(job_type)}\r\n{job_type}\r\n"
            f"${len(score)}\r\n{score}\r\n${len(due)}\r\n{due}\r\n"
            f"${len(dedupe)}\r\n{dedupe}\r\n${len(spec)}\r\n{spec}\r\n"
            f"${len(state)}\r\n{state}\r\n${len(info)}\r\n{info}\r\n"
        )
    return "".join(
        [
            f"${len(word.encode())}\r\n{word}\r\n"
            for word in (job_id, job_type, score, due, dedupe, spec, state, info)
        ]
    )


def pairs(flat: list[bytes]) -> dict[bytes, bytes]:
    """``[k1, v1, k2, v2, ...]`` (a function's HGETALL) as a dict."""
    return dict(zip(flat[0::2], flat[1::2], strict=True))


# -- decoding ------------------------------------------------------------------------------
def _number(value: object, name: str) -> float:
    if type(value) is float:
        return value
    if type(value) is int:
        return float(value)
    raise CorruptJob(f"job record field {name!r} must be a number, got {value!r}")


def _opt_number(value: object, name: str) -> float | None:
    return None if value is None else _number(value, name)


def _integer(value: object, name: str) -> int:
    if type(value) is not int:
        raise CorruptJob(f"job record field {name!r} must be an integer, got {value!r}")
    return value


def _text(value: object, name: str) -> str:
    if type(value) is not str:
        raise CorruptJob(f"job record field {name!r} must be a string, got {value!r}")
    return value


def _opt_text(value: object, name: str) -> str | None:
    return None if value is None else _text(value, name)


def error_from(value: object) -> JobError | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise CorruptJob(f"job record field 'error' must be an object, got {value!r}")
    trace = value.get("traceback")
    return JobError(
        _text(value.get("message"), "error.message"),
        _text(value.get("kind"), "error.kind"),
        None if trace is None else _text(trace, "error.traceback"),
    )


def _progress(value: object) -> Progress | None:
    if value is None:
        return None
    if type(value) is not dict:
        raise CorruptJob(f"job record field 'progress' must be an object, got {value!r}")
    return Progress(
        _number(value.get("done"), "progress.done"),
        _opt_number(value.get("total"), "progress.total"),
        _text(value.get("message", ""), "progress.message"),
    )


def spec_types_sound(
    payload: object,
    metadata: object,
    timeout: object,
    memory_mb: object,
    created_at: object,
    correlation_id: object,
    dedupe_key: object,
) -> bool:
    """Whether a spec's fields have the types a job needs (the check of every decoder)."""
    return (
        type(payload) is dict
        and type(metadata) is dict
        and type(timeout) in _NUMBERS
        and type(memory_mb) is int
        and type(created_at) in _NUMBERS
        and type(correlation_id) is str
        and (dedupe_key is None or type(dedupe_key) is str)
    )


def spec_fields(spec: bytes | None) -> dict[str, object]:
    """The Job fields of a stored ``spec``."""
    if spec is None:
        raise CorruptJob("job record lacks its 'spec' field")
    try:
        r = decode_json(spec)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record is not valid JSON: {exc}") from None
    if type(r) is not dict:
        raise CorruptJob(f"job record must be a JSON object, got {type(r).__name__}")
    get = r.get
    try:
        job_id, payload, created_at = r["id"], r["payload"], r["created_at"]
    except KeyError as exc:
        raise CorruptJob(f"job record lacks field {exc.args[0]!r}") from None
    metadata, dedupe_key = get("metadata", _NO_METADATA), get("dedupe_key")
    timeout, memory_mb = get("timeout", DEFAULT_TIMEOUT_SECONDS), get("memory_mb", 0)
    correlation_id = get("correlation_id", job_id)
    if type(job_id) is not str or not spec_types_sound(
        payload, metadata, timeout, memory_mb, created_at, correlation_id, dedupe_key
    ):
        raise CorruptJob(f"job record spec has a field of the wrong type: {r!r:.300}")
    error, progress = get("error"), get("progress")
    return {
        "id": job_id,
        "payload": payload,
        "metadata": {} if metadata is _NO_METADATA else metadata,
        "dedupe_key": dedupe_key,
        "timeout": float(timeout),  # type: ignore[arg-type]
        "memory_mb": memory_mb,
        "correlation_id": correlation_id,
        "created_at": float(created_at),  # type: ignore[arg-type]
        "error": None if error is None else error_from(error),
        "result": get("result"),
        "progress": None if progress is None else _progress(progress),
    }


def state_fields(raw: bytes | None) -> dict[str, object]:
    """The Job fields of a ``state`` line."""
    if raw is None:
        raise CorruptJob("job record lacks its 'state' field")
    try:
        (status, attempts, token, not_before, started_at, worker, finished_at, updated_at,
         expires) = raw.decode().split(" ")  # fmt: skip
        fields: dict[str, object] = {
            "status": STATUSES[status],
            "attempts": int(attempts),
            "lease_token": int(token),
            "not_before": float(not_before),
            "started_at": float(started_at) if started_at else None,
            "worker_id": worker_from(worker),
            "finished_at": float(finished_at) if finished_at else None,
            "updated_at": float(updated_at),
            "lease_expires_at": float(expires) if expires else None,
        }
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record state {raw[:200]!r} is invalid: {exc!r}") from None
    return fields


def info_fields(raw: bytes | None, into: dict[str, object]) -> None:
    """Put the Job fields of an ``info`` line (type, priority, max_attempts) ``into``."""
    if raw is None:
        raise CorruptJob("job record lacks its 'info' field")
    try:
        job_type, _, priority, max_attempts, _ = raw.decode().split(" ")
        into["type"] = job_type
        into["priority"] = int(priority)
        into["max_attempts"] = int(max_attempts)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record info {raw[:200]!r} is invalid: {exc!r}") from None


def _build(fields: dict[str, object]) -> Job:
    """The Job of ``fields``, which must name every field (see :func:`make_job`)."""
    if fields.keys() != _JOB_FIELDS:
        raise CorruptJob(f"job record {fields.get('id')!r} decodes to the wrong fields")
    return make_job(fields)


def make_job(fields: dict[str, object]) -> Job:
    """The Job of ``fields`` (every field, each of its type: checked by the decoders), validated
    by the core's ``validate_job`` as ``Job()`` would, without its per-field frozen setattr."""
    job = object.__new__(Job)
    job.__dict__.update(fields)
    try:
        validate_job(job)
    except ValueError as exc:
        raise CorruptJob(f"job record {fields.get('id')!r} is invalid: {exc}") from None
    return job


def _opt_json(raw: bytes) -> JSONValue:
    decoded: JSONValue = decode_json(raw) if raw else None
    return decoded


def error_json(raw: bytes) -> JobError | None:
    return error_from(_opt_json(raw))


def progress_json(raw: bytes) -> Progress | None:
    return _progress(_opt_json(raw))


# hash fields besides spec and state -> (Job attribute, parser of the stored bytes)
JSON_FIELDS: tuple[tuple[str, Callable[[bytes], object]], ...] = (
    ("progress", progress_json),
    ("error", error_json),
    ("result", _opt_json),
)
_JSON_KEYS = tuple((name.encode(), name, parse) for name, parse in JSON_FIELDS)


def json_field(name: str, parse: Callable[[bytes], object], raw: bytes) -> object:
    try:
        return parse(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record field {name!r} is invalid: {exc}") from None


def decode_hash(flat: Mapping[bytes, bytes]) -> Job:
    """The job stored in the hash ``flat``; raise CorruptJob naming what is wrong."""
    fields = spec_fields(flat.get(b"spec"))
    fields.update(state_fields(flat.get(b"state")))
    info_fields(flat.get(b"info"), fields)
    for key, name, parse in _JSON_KEYS:
        raw = flat.get(key)
        if raw is not None:
            fields[name] = json_field(name, parse, raw)
    return _build(fields)
