"""The hot steps' arguments and replies: claim, complete and the other settling steps.

A claim's entry carries what the job brought along (spec, the new state line, error, info);
what the claim itself wrote (now, the lease expiry, the worker id) the client already knows, so
it is not read back. A complete sends the start of the state line it expects and gets back
only the job's progress: what it changed (status, times, result) the client knows. Jobs are copied
field by field (``object.__new__`` and the instance dict, skipping the frozen dataclass's
per-field setattr); a decoded job is still checked by the core's ``validate_job``.
"""

from __future__ import annotations

from collections.abc import Mapping

from gaia.validator.core.errors import CorruptJob
from gaia.validator.core.job import DEFAULT_TIMEOUT_SECONDS, Job, validate_job
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.redis.records import (
    JSON_FIELDS,
    decode_json,
    error_from,
    error_json,
    json_field,
    progress_json,
    spec_types_sound,
    state_fields,
)

_NO_METADATA: dict[str, object] = {}  # marks a spec without metadata (each job gets its own {})
_new = object.__new__
_set = object.__setattr__  # a frozen dataclass refuses its own setattr


def decode_claimed(
    job_id: str,
    spec: bytes | None,
    state: bytes | None,
    error: bytes | None,
    info: bytes | None,
    *,
    now: float,
    expires: float,
    worker_id: str,
) -> Job:
    """A job the claim function returned (error None: unset). The claim ran with ``now`` and
    wrote ``expires`` and ``worker_id``, so of the state line only attempts, lease_token,
    not_before and finished_at are read. The hot path of a claim: every field is decoded and
    checked here in one go (the checks of :func:`.records.decode_hash`)."""
    if spec is None or state is None or info is None:
        raise CorruptJob(f"job record {job_id} lacks its spec, state or info field")
    try:
        r = decode_json(spec)
        status, attempts, token, not_before, _, _, finished_at, _ = state.decode().split(" ", 7)
        job_type, _, priority, max_attempts, _ = info.decode().split(" ")
        if type(r) is not dict or status != "running":
            raise ValueError(f"spec {spec[:80]!r} with state {state[:80]!r}")
        get = r.get
        payload, metadata, created_at = r["payload"], get("metadata", _NO_METADATA), r["created_at"]
        dedupe_key, correlation_id = get("dedupe_key"), get("correlation_id", job_id)
        timeout, memory_mb = get("timeout", DEFAULT_TIMEOUT_SECONDS), get("memory_mb", 0)
        if r["id"] != job_id or not spec_types_sound(
            payload, metadata, timeout, memory_mb, created_at, correlation_id, dedupe_key
        ):
            raise ValueError(f"spec {r!r:.300} has a field of the wrong type or id")
        enqueued_error = get("error")
        fields = {
            "id": job_id,
            "type": job_type,
            "payload": payload,
            "metadata": {} if metadata is _NO_METADATA else metadata,
            "priority": int(priority),
            "status": JobStatus.RUNNING,
            "attempts": int(attempts),
            "max_attempts": int(max_attempts),
            "not_before": float(not_before),
            "dedupe_key": dedupe_key,
            "timeout": float(timeout),  # type: ignore[arg-type]
            "memory_mb": memory_mb,
            "correlation_id": correlation_id,
            "created_at": float(created_at),  # type: ignore[arg-type]
            "updated_at": now,
            "started_at": now,
            "finished_at": float(finished_at) if finished_at else None,
            "lease_token": int(token),
            "lease_expires_at": expires,
            "worker_id": worker_id,
            "error": (
                error_json(error)
                if error is not None
                else None
                if enqueued_error is None
                else error_from(enqueued_error)
            ),
            "result": get("result"),
            "progress": None,  # a claim starts without progress
        }
    except (ValueError, KeyError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record {job_id} is invalid: {exc!r}") from None
    job = _new(Job)
    _set(job, "__dict__", fields)
    try:
        validate_job(job)
    except ValueError as exc:
        raise CorruptJob(f"job record {job_id} is invalid: {exc}") from None
    return job


def new_lease(job: Job, worker_id: str, expires: float) -> Lease:
    """The lease on a claimed ``job`` (as ``Lease(...)``, without its per-field setattr)."""
    lease = _new(Lease)
    _set(
        lease,
        "__dict__",
        {"job": job, "token": job.lease_token, "worker_id": worker_id, "expires_at": expires},
    )
    return lease


def held_state(lease: Lease) -> str:
    """The start of the state line a job has while ``lease`` holds it (status, attempts, lease
    token): what a step taken under the lease checks."""
    return f"running {lease.job.attempts} {lease.token} "


def complete_item(lease: Lease, result: str) -> list[str]:
    """The complete function's arguments for ``lease``: id, the state line the job must start
    with (:func:`held_state`), type, dedupe flag, result JSON."""
    job = lease.job
    return [
        job.id,
        held_state(lease),
        job.type,
        "0" if job.dedupe_key is None else "1",
        result,
    ]


def decode_completed(job: Job, entry: list[bytes | None], now: float, result: JSONValue) -> Job:
    """``job`` after the complete function ran with ``now``, stored ``result`` and replied
    ``entry``: {None, progress as stored} on its hot path, or, for a complete re-sent after a
    lost reply, what :func:`decode_settled` reads."""
    if entry[0] is not None:
        return decode_settled(job, entry, {"result": result})
    progress = entry[1]
    fields = job.__dict__.copy()
    fields["status"] = JobStatus.SUCCEEDED
    fields["updated_at"] = fields["finished_at"] = now
    fields["lease_expires_at"] = None
    fields["result"] = result
    fields["progress"] = None if not progress else json_field("progress", progress_json, progress)
    copy = _new(Job)
    _set(copy, "__dict__", fields)
    return copy


def decode_settled(
    job: Job, entry: list[bytes | None], known: Mapping[str, object] | None = None
) -> Job:
    """``job`` after a settling step whose entry is the new state line, then progress, error
    and result as stored (those left out or None: unchanged).

    ``known``: fields the caller stored and the function does not send back (the result of a
    complete); the entry's values win. A settling step never changes ``spec`` or ``info``, so a
    copy of the lease's job with the changed fields is the stored job (each changed field is
    parsed and checked here).
    """
    changes = state_fields(entry[0])
    if known:
        for name, value in known.items():
            changes.setdefault(name, value)
    for (name, parse), raw in zip(JSON_FIELDS, entry[1:], strict=False):
        if raw is not None:
            changes[name] = None if raw == b"" else json_field(name, parse, raw)
    if changes["attempts"] < 0:  # type: ignore[operator]
        raise CorruptJob(f"job record {job.id} has a negative attempt count")
    copy = object.__new__(Job)
    copy.__dict__.update(job.__dict__)
    copy.__dict__.update(changes)
    return copy
