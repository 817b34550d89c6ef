"""Job, state machine, codec, retry policy and payload schema contracts."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from enum import Enum
from typing import Literal

import pytest

from gaia.validator.core import (
    CorruptJob,
    InvalidTransition,
    Job,
    JobError,
    JobStatus,
    PayloadError,
    Progress,
    RetryPolicy,
    Task,
    TaskContext,
    TaskRegistry,
    UnknownTask,
    new_job,
)
from gaia.validator.core.codec import decode_job, encode_job
from gaia.validator.core.payload import decode_payload, encode_payload
from gaia.validator.core.status import TERMINAL_STATUSES, TRANSITIONS, check_transition


def test_state_machine_edges() -> None:
    assert TRANSITIONS[JobStatus.QUEUED] == {JobStatus.RUNNING, JobStatus.CANCELLED}
    for terminal in (JobStatus.SUCCEEDED, JobStatus.CANCELLED):
        assert TRANSITIONS[terminal] == frozenset()
    assert TRANSITIONS[JobStatus.DEAD] == {JobStatus.QUEUED}
    check_transition(JobStatus.RUNNING, JobStatus.RETRY_SCHEDULED)
    with pytest.raises(InvalidTransition, match="cannot go from succeeded to running"):
        check_transition(JobStatus.SUCCEEDED, JobStatus.RUNNING)
    with pytest.raises(InvalidTransition, match="may go to: cancelled, running"):
        check_transition(JobStatus.QUEUED, JobStatus.SUCCEEDED)


def test_every_status_reaches_a_terminal_state() -> None:
    for start in JobStatus:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        assert seen & TERMINAL_STATUSES, f"{start} can never finish"


def test_job_transition_validates_and_stamps_time() -> None:
    job = new_job("a.b", {"x": 1}, now=100.0)
    running = job.transition(JobStatus.RUNNING, 105.0, attempts=1)
    assert running.status is JobStatus.RUNNING and running.updated_at == 105.0
    assert job.status is JobStatus.QUEUED, "jobs are immutable"
    with pytest.raises(InvalidTransition):
        job.transition(JobStatus.DEAD, 106.0)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"type": "Bad Type"}, "dotted lower-case"),
        ({"type": "weather.era5\n"}, "dotted lower-case"),
        ({"priority": 10**9}, "priority"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"timeout": 0}, "timeout"),
        ({"memory_mb": -1}, "memory_mb"),
        ({"dedupe_key": ""}, "dedupe_key"),
    ],
)
def test_job_rejects_bad_fields(changes: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Job(**{"id": "j1", "type": "a.b", "payload": {}, **changes})  # type: ignore[arg-type]


def test_new_job_refuses_non_json_payload() -> None:
    with pytest.raises(TypeError, match="payload is not JSON-serialisable"):
        new_job("a.b", {"when": object()})  # type: ignore[dict-item]
    with pytest.raises(TypeError, match="payload is not JSON-serialisable"):
        new_job("a.b", {"x": float("nan")})


def test_new_job_defaults() -> None:
    job = new_job("weather.era5", {"run": "r"}, delay=30, now=1000.0)
    assert job.not_before == 1030.0 and job.created_at == 1000.0
    assert job.correlation_id == job.id and len(job.id) == 32


def test_codec_round_trip_keeps_every_field() -> None:
    job = new_job(
        "a.b",
        {"nested": {"list": [1, 2.5, None, "s", True]}},
        priority=-3,
        dedupe_key="k",
        metadata={"m": 1},
        memory_mb=512,
        now=5.0,
    )
    job = job.transition(
        JobStatus.RUNNING,
        6.0,
        attempts=1,
        lease_token=4,
        worker_id="w",
        lease_expires_at=36.0,
        progress=Progress(2, 9, "step"),
        error=JobError("earlier", "ValueError", "tb"),
    )
    assert decode_job(encode_job(job)) == job


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"id": "x"}', "lacks field"),
    ],
)
def test_codec_names_what_is_corrupt(record: str, message: str) -> None:
    with pytest.raises(CorruptJob, match=message):
        decode_job(record)


def test_codec_rejects_wrong_field_types() -> None:
    record = json.loads(encode_job(new_job("a.b", {})))
    record["attempts"] = "three"
    with pytest.raises(CorruptJob, match="'attempts' must be an integer"):
        decode_job(json.dumps(record))
    record["attempts"] = 0
    record["status"] = "exploded"
    with pytest.raises(CorruptJob, match="unknown value 'exploded'"):
        decode_job(json.dumps(record))
    record["status"] = "queued"
    record["payload"] = "text"
    with pytest.raises(CorruptJob, match="'payload' must be an object"):
        decode_job(json.dumps(record))


def test_retry_policy_backoff_has_full_jitter_and_cap() -> None:
    policy = RetryPolicy(max_attempts=10, base_delay=1.0, max_delay=30.0)
    assert [policy.ceiling(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    rng = random.Random(1)
    delays = [policy.delay(4, rng) for _ in range(2000)]
    assert 0 <= min(delays) < 0.5 and 7.5 < max(delays) <= 8.0
    assert RetryPolicy(jitter=False, base_delay=2).delay(3) == 8.0
    assert policy.ceiling(10_000) == 30.0
    assert policy.exhausted(10) and not policy.exhausted(9)
    assert policy.exhausted(3, max_attempts=3)
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


class Stage(Enum):
    DAY1 = "day1"
    ERA5 = "era5"


@dataclass(frozen=True)
class Miner:
    uid: int
    hotkey: str


@dataclass(frozen=True)
class ScorePayload:
    run_id: str
    stage: Stage
    miners: list[Miner]
    leads: tuple[int, ...] = ()
    weight: float = 1.0
    mode: Literal["fast", "reference"] = "fast"
    note: str | None = None
    extra: dict[str, int] = field(default_factory=dict)


def test_payload_round_trip() -> None:
    payload = ScorePayload("r1", Stage.ERA5, [Miner(1, "hk1")], (24, 48), 2, "reference")
    encoded = encode_payload(payload)
    assert encoded["stage"] == "era5" and encoded["weight"] == 2
    assert decode_payload(ScorePayload, encoded) == payload


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"stage": "day1", "miners": []}, "payload.run_id: required field is missing"),
        ({"run_id": 3, "stage": "day1", "miners": []}, "payload.run_id: expected str, got int"),
        ({"run_id": "r", "stage": "day9", "miners": []}, "payload.stage: expected one of"),
        (
            {"run_id": "r", "stage": "day1", "miners": [{"uid": "x", "hotkey": "h"}]},
            r"payload.miners\[0\].uid: expected int",
        ),
        ({"run_id": "r", "stage": "day1", "miners": [], "mode": "slow"}, "payload.mode"),
        ({"run_id": "r", "stage": "day1", "miners": [], "bogus": 1}, "unexpected field 'bogus'"),
        (
            {"run_id": "r", "stage": "day1", "miners": [], "extra": {"a": "b"}},
            "payload.extra.a: expected int",
        ),
        ({"run_id": "r", "stage": "day1", "miners": [], "weight": True}, "payload.weight"),
    ],
)
def test_payload_errors_name_the_field(data: dict[str, object], message: str) -> None:
    with pytest.raises(PayloadError, match=message):
        decode_payload(ScorePayload, data)  # type: ignore[arg-type]


async def _noop(ctx: TaskContext, payload: ScorePayload) -> None:
    return None


def test_task_builds_jobs_with_its_policy_and_checks_payload() -> None:
    task = Task(
        "weather.score",
        _noop,
        ScorePayload,
        retry=RetryPolicy(max_attempts=5),
        timeout=60,
        memory_mb=1200,
        priority=4,
    )
    job = task.job(ScorePayload("r1", Stage.DAY1, []), dedupe_key="r1:day1")
    assert (job.type, job.max_attempts, job.timeout, job.memory_mb, job.priority) == (
        "weather.score",
        5,
        60,
        1200,
        4,
    )
    assert task.decode(job.payload) == ScorePayload("r1", Stage.DAY1, [])
    with pytest.raises(PayloadError):
        task.job({"run_id": 1})
    with pytest.raises(ValueError, match="dotted lower-case"):
        Task("Not A Name", _noop, dict)


def test_registry_refuses_duplicates_and_names_unknown_types() -> None:
    registry = TaskRegistry([Task("a.one", _noop, dict)])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="already registered"):
        registry.add(Task("a.one", _noop, dict))
    with pytest.raises(
        UnknownTask, match=r"no task is registered for job type 'a.two' \(known: a.one\)"
    ):
        registry.get("a.two")
    assert "a.one" in registry and registry.names() == ["a.one"]
