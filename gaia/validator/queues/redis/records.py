"""A job record as a Redis hash (stored format 2), and back.

Fields of the hash ``job:<id>``:

- ``spec``: JSON of the fields no step changes: id, payload, created_at, and metadata,
  dedupe_key, timeout, memory_mb, correlation_id unless they have their default value (empty,
  null, 300, 0, the id); and the enqueue-time ``error``, ``result`` and ``progress`` when not
  null. Leaving defaults out keeps it short: a claim sends it back and the client decodes it;
- ``state``: the small fields that change, as one line of text, space-separated, in the order of
  :data:`STATE_FIELDS`: times are exact float text (Python's ``repr``, copied verbatim by the Lua
  functions, so they survive exactly; empty = null), ``dedupe`` is 1 when the job holds its
  dedupe key, and ``worker_id``, the only free text, is the rest of the line (empty = null).
  A step reads and writes this one field instead of a dozen: the functions' cost is mostly per
  argument and per reply value;
- ``error``, ``result``, ``progress``: JSON once a step set them (empty = null; absent = the
  value in ``spec``); ``dedupe``: the dedupe key, for the functions; ``corrupt_spec`` /
  ``corrupt_state``: the original bytes of a record that was dead-lettered as undecodable.

No value is ever re-encoded by Lua (Redis's cjson would round floats to 14 digits and turn
``[]`` into ``{}``). Decoding is strict: a field of the wrong type raises :class:`CorruptJob`
naming it.
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
from gaia.validator.core.queue import Lease
from gaia.validator.core.status import JobStatus

_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)
_encode = _ENCODER.encode
_scan: Callable[[str, int], tuple[JSONValue, int]] = json.JSONDecoder().scan_once  # type: ignore[attr-defined]
_INF = float("inf")
_STATUSES = {status.value: status for status in JobStatus}
_NUMBERS = (int, float)
_NO_METADATA: dict[str, JSONValue] = {}  # marks a spec without metadata (each job gets its own {})
_JOB_FIELDS = frozenset(Job.__dataclass_fields__)


def _decode(raw: bytes | str) -> JSONValue:
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
    "updated_at",
    "started_at",
    "finished_at",
    "lease_expires_at",
    "seq",
    "type",
    "priority",
    "max_attempts",
    "dedupe",
    "worker_id",
)
"""The fields of the ``state`` line, in order (the Lua library reads the same layout)."""


def number_text(value: float) -> str:
    """Exact text of a finite float (``repr`` round-trips); refuses NaN and infinities."""
    if value != value or value == _INF or value == -_INF:
        raise ValueError(f"time {value!r} must be a finite number of seconds")
    return repr(float(value))


def json_text(value: JSONValue) -> str:
    """Strict JSON (no NaN), for results, errors and progress written by the functions."""
    if value is None:
        return "null"
    try:
        return _encode(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"value is not JSON-serialisable: {exc}") from None


def error_text(error: JobError | None) -> str:
    return "" if error is None else json_text(error_to_record(error))


def _time(value: float | None) -> str:
    return "" if value is None else repr(value)


def enqueue_arguments(job: Job) -> list[str]:
    """The arguments the enqueue function reads for one job (ENQUEUE_WIDTH), in its order: id,
    type, ready score, not_before, dedupe key, spec, and the state line before and after seq."""
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
        text = _encode(spec)
        not_before = number_text(job.not_before)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"job {job.id} cannot be stored: {exc}") from None
    worker = job.worker_id or ""
    return [
        job.id,
        job.type,
        str(-job.priority),
        not_before,
        job.dedupe_key or "",
        text,
        f"queued {job.attempts} {job.lease_token} {not_before} {job.updated_at!r} "
        f"{_time(job.started_at)} {_time(job.finished_at)} {_time(job.lease_expires_at)}",
        f"{job.type} {job.priority} {job.max_attempts} {0 if job.dedupe_key is None else 1} "
        f"{worker}",
    ]


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


def _error(value: object) -> JobError | None:
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


def _spec(spec: bytes | None) -> dict[str, object]:
    """The Job fields of a stored ``spec``."""
    if spec is None:
        raise CorruptJob("job record lacks its 'spec' field")
    try:
        r = _decode(spec)
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
    if (
        type(job_id) is not str
        or type(payload) is not dict
        or type(metadata) is not dict
        or type(timeout) not in _NUMBERS
        or type(memory_mb) is not int
        or type(created_at) not in _NUMBERS
        or type(correlation_id) is not str
        or (dedupe_key is not None and type(dedupe_key) is not str)
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
        "error": None if error is None else _error(error),
        "result": get("result"),
        "progress": None if progress is None else _progress(progress),
    }


def _state(raw: bytes | None) -> dict[str, object]:
    """The Job fields of a ``state`` line."""
    if raw is None:
        raise CorruptJob("job record lacks its 'state' field")
    try:
        parts = raw.decode().split(" ", 13)
        (
            status,
            attempts,
            token,
            not_before,
            updated_at,
            started_at,
            finished_at,
            expires,
            _,
            job_type,
            priority,
            max_attempts,
            _,
            worker,
        ) = parts
        fields: dict[str, object] = {
            "status": _STATUSES[status],
            "attempts": int(attempts),
            "lease_token": int(token),
            "not_before": float(not_before),
            "updated_at": float(updated_at),
            "started_at": float(started_at) if started_at else None,
            "finished_at": float(finished_at) if finished_at else None,
            "lease_expires_at": float(expires) if expires else None,
            "type": job_type,
            "priority": int(priority),
            "max_attempts": int(max_attempts),
            "worker_id": worker or None,
        }
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record state {raw[:200]!r} is invalid: {exc!r}") from None
    return fields


def _build(fields: dict[str, object]) -> Job:
    """The Job of ``fields``, which must name every field (see :func:`_make`)."""
    if fields.keys() != _JOB_FIELDS:
        raise CorruptJob(f"job record {fields.get('id')!r} decodes to the wrong fields")
    return _make(fields)


def _make(fields: dict[str, object]) -> Job:
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
    decoded: JSONValue = _decode(raw) if raw else None
    return decoded


def _error_json(raw: bytes) -> JobError | None:
    return _error(_opt_json(raw))


def _progress_json(raw: bytes) -> Progress | None:
    return _progress(_opt_json(raw))


# hash fields besides spec and state -> (Job attribute, parser of the stored bytes)
JSON_FIELDS: tuple[tuple[str, Callable[[bytes], object]], ...] = (
    ("progress", _progress_json),
    ("error", _error_json),
    ("result", _opt_json),
)
_JSON_KEYS = tuple((name.encode(), name, parse) for name, parse in JSON_FIELDS)


def _json_field(name: str, parse: Callable[[bytes], object], raw: bytes) -> object:
    try:
        return parse(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record field {name!r} is invalid: {exc}") from None


def decode_claimed(
    job_id: str,
    spec: bytes | None,
    state: bytes | None,
    error: bytes | None,
    *,
    now: float,
    expires: float,
    worker_id: str,
) -> Job:
    """A job the claim function returned with its spec, new state and error (None: unset).

    The claim ran with ``now`` and wrote ``expires`` and ``worker_id`` (the caller's), so of the
    state only what the job brought along is read: attempts, lease_token, not_before,
    finished_at, type, priority and max_attempts.
    """
    fields = _spec(spec)
    if fields["id"] != job_id:
        raise CorruptJob(f"job record under id {job_id} carries id {fields['id']!r}")
    if state is None:
        raise CorruptJob(f"job record {job_id} lacks its 'state' field")
    try:
        (status, attempts, token, not_before, _, _, finished_at, _, _, job_type, priority,
         max_attempts, _, _) = state.decode().split(" ", 13)  # fmt: skip
        if status != "running":
            raise ValueError(f"status {status!r} after a claim")
        fields["status"] = JobStatus.RUNNING
        fields["attempts"] = int(attempts)
        fields["lease_token"] = int(token)
        fields["not_before"] = float(not_before)
        fields["finished_at"] = float(finished_at) if finished_at else None
        fields["type"] = job_type
        fields["priority"] = int(priority)
        fields["max_attempts"] = int(max_attempts)
        if error is not None:
            fields["error"] = _error_json(error)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record {job_id} is invalid: {exc!r}") from None
    fields["updated_at"] = fields["started_at"] = now
    fields["lease_expires_at"] = expires
    fields["worker_id"] = worker_id
    fields["progress"] = None
    return _make(fields)


def decode_hash(flat: Mapping[bytes, bytes]) -> Job:
    """The job stored in the hash ``flat``; raise CorruptJob naming what is wrong."""
    fields = _spec(flat.get(b"spec"))
    fields.update(_state(flat.get(b"state")))
    for key, name, parse in _JSON_KEYS:
        raw = flat.get(key)
        if raw is not None:
            fields[name] = _json_field(name, parse, raw)
    return _build(fields)


def decode_settled(
    job: Job, entry: list[bytes | None], known: Mapping[str, object] | None = None
) -> Job:
    """``job`` after a settling step whose entry is the new state, then progress, error and
    result as stored (those left out or None: unchanged).

    ``known``: fields the caller stored and the function does not send back (the result of a
    complete); the entry's values win. A settling step never changes ``spec``, so a copy of the
    lease's job with the changed fields is the stored job; it is made without re-validating the
    fields that did not change (each changed one is parsed and checked here).
    """
    changes = _state(entry[0])
    if known:
        for name, value in known.items():
            changes.setdefault(name, value)
    for (name, parse), raw in zip(JSON_FIELDS, entry[1:], strict=False):
        if raw is not None:
            changes[name] = None if raw == b"" else _json_field(name, parse, raw)
    if changes["attempts"] < 0:  # type: ignore[operator]
        raise CorruptJob(f"job record {job.id} has a negative attempt count")
    copy = object.__new__(Job)
    copy.__dict__.update(job.__dict__)
    copy.__dict__.update(changes)
    return copy


def decode_completed(job: Job, entry: list[bytes | None], now: float, result: JSONValue) -> Job:
    """``job`` after the complete function ran with ``now``, stored ``result`` and replied
    ``entry``: the new state and the progress as stored (its last heartbeat's), or, for a
    complete re-sent after a lost reply, the whole stored outcome (see :func:`decode_settled`).

    The new state is the lease's with status, updated_at, finished_at and lease_expires_at
    replaced, so it is not parsed again.
    """
    if len(entry) != 2:
        return decode_settled(job, entry, {"result": result})
    progress = entry[1]
    copy = object.__new__(Job)
    state = copy.__dict__
    state.update(job.__dict__)
    state["status"] = JobStatus.SUCCEEDED
    state["updated_at"] = state["finished_at"] = now
    state["lease_expires_at"] = None
    state["result"] = result
    state["progress"] = None if not progress else _json_field("progress", _progress_json, progress)
    return copy


def new_lease(job: Job, worker_id: str, expires: float) -> Lease:
    """The lease on a claimed ``job`` (as ``Lease(...)``, without its per-field frozen setattr)."""
    lease = object.__new__(Lease)
    lease.__dict__.update(job=job, token=job.lease_token, worker_id=worker_id, expires_at=expires)
    return lease
