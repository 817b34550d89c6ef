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
from gaia.validator.core.job import Job
from gaia.validator.core.json_value import JSONValue
from gaia.validator.core.queue import Lease
from gaia.validator.core.status import JobStatus
from gaia.validator.queues.redis.records import (
    JSON_FIELDS,
    error_json,
    info_fields,
    json_field,
    make_job,
    progress_json,
    spec_fields,
    state_fields,
)


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
    not_before and finished_at are read."""
    fields = spec_fields(spec)
    if fields["id"] != job_id:
        raise CorruptJob(f"job record under id {job_id} carries id {fields['id']!r}")
    if state is None:
        raise CorruptJob(f"job record {job_id} lacks its 'state' field")
    try:
        status, attempts, token, not_before, _, _, finished_at, _ = state.decode().split(" ", 7)
        if status != "running":
            raise ValueError(f"status {status!r} after a claim")
        fields["status"] = JobStatus.RUNNING
        fields["attempts"] = int(attempts)
        fields["lease_token"] = int(token)
        fields["not_before"] = float(not_before)
        fields["finished_at"] = float(finished_at) if finished_at else None
        if error is not None:
            fields["error"] = error_json(error)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CorruptJob(f"job record {job_id} is invalid: {exc!r}") from None
    info_fields(info, fields)
    fields["updated_at"] = fields["started_at"] = now
    fields["lease_expires_at"] = expires
    fields["worker_id"] = worker_id
    fields["progress"] = None
    return make_job(fields)


def new_lease(job: Job, worker_id: str, expires: float) -> Lease:
    """The lease on a claimed ``job`` (as ``Lease(...)``, without its per-field setattr)."""
    lease = object.__new__(Lease)
    lease.__dict__.update(job=job, token=job.lease_token, worker_id=worker_id, expires_at=expires)
    return lease


def complete_item(lease: Lease, result: str) -> list[str]:
    """The complete function's arguments for ``lease``: id, the start of the state line that
    the job must have (status, attempts, lease token), type, dedupe flag, result JSON."""
    job = lease.job
    return [
        job.id,
        f"running {job.attempts} {lease.token} ",
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
    copy = object.__new__(Job)
    fields = copy.__dict__
    fields.update(job.__dict__)
    fields["status"] = JobStatus.SUCCEEDED
    fields["updated_at"] = fields["finished_at"] = now
    fields["lease_expires_at"] = None
    fields["result"] = result
    fields["progress"] = None if not progress else json_field("progress", progress_json, progress)
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
