"""Schedule: validation with errors that name the problem, slot arithmetic, slot job ids."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gaia.validator.core import JobStatus, Task, TaskContext
from gaia.validator.scheduling import CatchUp, Schedule
from gaia.validator.scheduling.backlog import Backlog
from gaia.validator.scheduling.schedule import slot_stamp


@dataclass(frozen=True)
class Report:
    region: str
    days: int = 1


async def report(ctx: TaskContext, payload: Report) -> str:
    return payload.region


REPORT = Task("test.report", report, Report, timeout=42.0, priority=7)
HOUR = timedelta(hours=1)


def hourly(**changes: object) -> Schedule:
    fields: dict[str, object] = {"every": HOUR, "payload": Report("eu")}
    fields.update(changes)
    return Schedule("report", REPORT, **fields)  # type: ignore[arg-type]


# -- validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"every": timedelta(0)}, "every must be a positive timedelta"),
        ({"every": timedelta(seconds=-5)}, "every must be a positive timedelta"),
        ({"every": 3600}, "every must be a positive timedelta"),
        ({"start": datetime(2024, 1, 1)}, "start must be a timezone-aware datetime"),
        ({"catch_up": "sometimes"}, "unknown catch_up 'sometimes'; use one of 'latest', 'all'"),
        ({"catch_up": "all", "max_catch_up": 0}, "max_catch_up must be an int >= 1, got 0"),
        ({"catch_up": "all", "max_catch_up": 2.5}, "max_catch_up must be an int >= 1"),
        ({"max_catch_up": 5}, "max_catch_up applies only to catch_up='all', not 'latest'"),
        ({"payload": {"region": 3}}, "payload does not fit task test.report"),
        ({"payload": {"days": 2}}, "payload does not fit task test.report"),
        ({"payload": "eu"}, "payload does not fit task test.report"),
    ],
)
def test_a_bad_schedule_is_refused_naming_what_is_wrong(
    changes: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=r"^schedule report: ") as refused:
        hourly(**changes)
    assert message in str(refused.value)


@pytest.mark.parametrize("name", ["", "Report", "-report", "a b", "report/1", "r" * 101])
def test_a_bad_schedule_name_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match=r"schedule name .* must be 1-100 characters"):
        Schedule(name, REPORT, every=HOUR, payload=Report("eu"))


def test_a_schedule_needs_a_task() -> None:
    with pytest.raises(TypeError, match=r"report: task must be a Task, got 'test\.report'"):
        Schedule("report", "test.report", every=HOUR)  # type: ignore[arg-type]


def test_the_catch_up_policy_accepts_its_string_values() -> None:
    assert hourly(catch_up="none").catch_up is CatchUp.NONE
    assert hourly(catch_up="all").catch_up_limit == 24
    assert hourly(catch_up="all", max_catch_up=3).catch_up_limit == 3
    assert hourly().catch_up_limit == 1


def test_start_in_another_zone_is_kept_in_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    schedule = hourly(start=datetime(2024, 3, 1, 2, 30, tzinfo=plus_two))
    assert schedule.start == datetime(2024, 3, 1, 0, 30, tzinfo=UTC)
    assert schedule.slot_datetime(2) == datetime(2024, 3, 1, 2, 30, tzinfo=UTC)


# -- slot arithmetic --------------------------------------------------------------------------
periods = st.integers(min_value=1, max_value=10 * 86_400 * 1_000_000).map(
    lambda us: timedelta(microseconds=us)
)
starts = st.datetimes(
    min_value=datetime(1960, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
instants = st.floats(min_value=-3e8, max_value=4e9, allow_nan=False)


@given(every=periods, start=starts, now=instants)
def test_the_latest_due_slot_is_aligned_and_brackets_now(
    every: timedelta, start: datetime, now: float
) -> None:
    schedule = Schedule("s", REPORT, every=every, start=start, payload=Report("eu"))
    latest = schedule.latest_due(now)
    if latest is None:
        assert now < schedule.slot_time(0), "no slot is due only before the schedule's start"
        assert schedule.next_after(now) == 0
        return
    assert latest >= 0
    assert schedule.slot_time(latest) <= now < schedule.slot_time(latest + 1)
    assert schedule.next_after(now) == latest + 1
    moment = schedule.slot_datetime(latest)
    assert (moment - schedule.start) % every == timedelta(0), "slots lie on the period's grid"
    assert math.isclose(moment.timestamp(), schedule.slot_time(latest), abs_tol=1e-6)


@given(every=periods, start=starts, slot=st.integers(min_value=0, max_value=10_000))
def test_slots_are_monotonic_and_their_ids_round_trip(
    every: timedelta, start: datetime, slot: int
) -> None:
    schedule = Schedule("s-1.x", REPORT, every=every, start=start, payload=Report("eu"))
    assert schedule.slot_time(slot) < schedule.slot_time(slot + 1)
    assert schedule.slot_datetime(slot + 1) - schedule.slot_datetime(slot) == every
    assert schedule.job_id(slot) != schedule.job_id(slot + 1)
    assert schedule.slot_of(schedule.job_id(slot)) == slot
    assert schedule.latest_due(schedule.slot_time(slot)) == slot, "a slot is due at its time"


@given(now=instants, limit=st.integers(min_value=1, max_value=50), gap=st.floats(0, 1e6))
def test_the_backlog_keeps_only_what_its_policy_allows(now: float, limit: int, gap: float) -> None:
    policies = {"latest": hourly(), "none": hourly(catch_up="none")}
    policies["all"] = hourly(catch_up="all", max_catch_up=limit)
    for name, schedule in policies.items():
        backlog = Backlog.at_start(schedule, now)
        latest = schedule.latest_due(now)
        if name == "none" or latest is None:
            assert backlog.head is None
        else:
            assert backlog.waiting[-1] == latest
            assert len(backlog.waiting) == min(latest + 1, schedule.catch_up_limit)
        before = backlog.waiting
        dropped = backlog.advance(now + gap)
        assert len(backlog.waiting) <= schedule.catch_up_limit
        assert backlog.next_slot == schedule.next_after(now + gap)
        assert backlog.schedule.slot_time(backlog.next_slot) > now + gap
        assert set(dropped).isdisjoint(backlog.waiting)
        assert set(before) <= set(dropped) | set(backlog.waiting), "no slot vanishes unreported"


# -- slot jobs --------------------------------------------------------------------------------
def test_a_slot_job_carries_the_task_policy_the_slot_id_and_the_schedule_key() -> None:
    schedule = hourly(start=datetime(2024, 1, 1, tzinfo=UTC))
    job = schedule.job(5, now=1_700_000_000.0)
    assert job.id == "sched-report-20240101T050000Z"
    assert job.correlation_id == job.id
    assert job.type == "test.report"
    assert job.payload == {"region": "eu", "days": 1}
    assert job.dedupe_key == "schedule:report"
    assert job.not_before == datetime(2024, 1, 1, 5, tzinfo=UTC).timestamp()
    assert (job.timeout, job.priority, job.status) == (42.0, 7, JobStatus.QUEUED)
    assert job.metadata == {"schedule": "report", "slot": "2024-01-01T05:00:00+00:00"}
    assert job.created_at == 1_700_000_000.0


def test_sub_second_slots_get_microseconds_in_their_id() -> None:
    schedule = hourly(every=timedelta(milliseconds=250))
    assert schedule.job_id(0) == "sched-report-19700101T000000Z"
    assert schedule.job_id(1) == "sched-report-19700101T000000.250000Z"
    assert schedule.slot_of("sched-report-19700101T000000.250000Z") == 1


@pytest.mark.parametrize(
    "job_id",
    [
        "sched-other-19700101T010000Z",  # another schedule
        "sched-report-19700101T013000Z",  # off the hourly grid
        "sched-report-19700101T010000.000000Z",  # not the canonical stamp
        "sched-report-1970-01-01T01:00:00Z",
        "0b5c6d",
    ],
)
def test_slot_of_recognises_only_this_schedules_slot_ids(job_id: str) -> None:
    assert hourly().slot_of(job_id) is None


def test_slot_stamps_are_fixed_width_whatever_the_year() -> None:
    assert slot_stamp(datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC)) == "09991231T235959Z"
