"""A Schedule: which task runs, with which payload, at which slots, and how missed slots catch up.

Slots are ``start + k * every`` for k = 0, 1, 2, ... (none before ``start``). Slot arithmetic is
done in whole microseconds, so slot times never drift however many periods have passed. Each
slot's job has a deterministic id (``sched-<name>-<UTC time of the slot>``), the unique
(schedule, slot) key that lets any number of schedulers enqueue the same slot with one job
stored, and the dedupe key ``schedule:<name>``, so at most one run of a schedule is active.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Protocol

from gaia.validator.core.errors import PayloadError
from gaia.validator.core.job import Job
from gaia.validator.core.json_value import JSONObject
from gaia.validator.core.payload import encode_payload

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SCHEDULE_NAME_PATTERN = re.compile(r"[a-z0-9][a-z0-9_.-]{0,99}")
JOB_ID_PREFIX = "sched-"
DEDUPE_PREFIX = "schedule:"
DEFAULT_MAX_CATCH_UP = 24
_MICROSECOND = timedelta(microseconds=1)


class CatchUp(StrEnum):
    """What happens to slots whose time passed while they could not be enqueued.

    A slot is missed when no scheduler ran at its time (downtime), or when the schedule's
    previous run was still active then (an overrun: the dedupe key holds one run at a time).
    A scheduler keeps nothing across restarts: on start it derives the slots owed from the clock,
    and skips those whose job the queue holds already (in any status).
    """

    LATEST = "latest"
    """On start, the last slot whose time is <= now (the current slot; none before ``start``).
    While running, each slot as it comes due; a slot blocked by an overrun is tried again every
    ``recheck`` seconds and runs late once the previous run ends, unless the next slot comes due
    first: then it is dropped for that one. So after any gap, only the most recent slot runs."""
    ALL = "all"
    """On start, the last ``max_catch_up`` slots whose time is <= now (default 24, also on the
    first start of a new schedule: set ``start`` to skip history), oldest first, one run at a time
    (each waits for the one before to finish). Overruns queue up the same way; beyond
    ``max_catch_up`` waiting slots the oldest are dropped. A finished slot is recognised only
    while the queue retains it (result retention, 1 day by default): keep ``max_catch_up *
    every`` within it, or a slot that ran may run again."""
    NONE = "none"
    """On start, nothing: the first slot is the first whose time is after the start. While
    running, as ``latest`` (an overrun slot is dropped when the next one comes due)."""


class ScheduledTask(Protocol):
    """What a schedule needs of its task; every :class:`~gaia.validator.core.task.Task` is one."""

    @property
    def name(self) -> str: ...

    def job(
        self,
        payload: JSONObject,
        *,
        dedupe_key: str | None = None,
        correlation_id: str | None = None,
        metadata: JSONObject | None = None,
    ) -> Job: ...


@dataclass(frozen=True)
class Schedule:
    """Run ``task`` with ``payload`` at every slot ``start + k * every``.

    ``name`` identifies the schedule in the queue (job ids and dedupe key): renaming a schedule,
    or changing ``every`` or ``start``, starts a new series of slots whose earlier runs are not
    recognised. ``payload`` is an instance of the task's payload type or a JSON object, checked
    against the task here. ``max_catch_up`` (default 24) bounds ``catch_up="all"`` only.
    """

    name: str
    task: ScheduledTask
    every: timedelta
    payload: object = field(default_factory=dict)
    start: datetime = EPOCH
    catch_up: CatchUp = CatchUp.LATEST
    max_catch_up: int | None = None
    encoded_payload: JSONObject = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not SCHEDULE_NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"schedule name {self.name!r} must be 1-100 characters of lower-case letters, "
                f"digits, '_', '.' or '-', starting with a letter or digit"
            )
        if not isinstance(self.every, timedelta) or self.every <= timedelta(0):
            raise ValueError(
                f"schedule {self.name}: every must be a positive timedelta, got {self.every!r}"
            )
        if not isinstance(self.start, datetime) or self.start.utcoffset() is None:
            raise ValueError(
                f"schedule {self.name}: start must be a timezone-aware datetime "
                f"(e.g. datetime(2024, 1, 1, tzinfo=UTC)), got {self.start!r}"
            )
        if not isinstance(getattr(self.task, "name", None), str) or not callable(
            getattr(self.task, "job", None)
        ):
            raise TypeError(f"schedule {self.name}: task must be a Task, got {self.task!r}")
        object.__setattr__(self, "start", self.start.astimezone(UTC))
        object.__setattr__(self, "catch_up", _catch_up(self.name, self.catch_up))
        self._check_max_catch_up()
        try:
            encoded = encode_payload(self.payload)
            self.task.job(encoded)  # the task's own check: schema, plain JSON
        except (TypeError, ValueError, PayloadError) as exc:
            raise ValueError(
                f"schedule {self.name}: payload does not fit task {self.task.name}: {exc}"
            ) from exc
        object.__setattr__(self, "encoded_payload", encoded)

    def _check_max_catch_up(self) -> None:
        limit = self.max_catch_up
        if limit is None:
            return
        if self.catch_up is not CatchUp.ALL:
            raise ValueError(
                f"schedule {self.name}: max_catch_up applies only to catch_up='all', "
                f"not {self.catch_up.value!r}"
            )
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(
                f"schedule {self.name}: max_catch_up must be an int >= 1, got {limit!r}"
            )

    # -- slot arithmetic -------------------------------------------------------------------
    @property
    def period_us(self) -> int:
        return self.every // _MICROSECOND

    @property
    def start_us(self) -> int:
        return (self.start - EPOCH) // _MICROSECOND

    @property
    def catch_up_limit(self) -> int:
        """How many missed slots the policy keeps: ``max_catch_up`` for "all", else one."""
        if self.catch_up is CatchUp.ALL:
            return DEFAULT_MAX_CATCH_UP if self.max_catch_up is None else self.max_catch_up
        return 1

    def slot_time(self, slot: int) -> float:
        """Slot ``slot``'s time in POSIX seconds (as ``time.time()`` counts)."""
        return (self.start_us + slot * self.period_us) / 1_000_000

    def slot_datetime(self, slot: int) -> datetime:
        return EPOCH + timedelta(microseconds=self.start_us + slot * self.period_us)

    def latest_due(self, now: float) -> int | None:
        """The last slot whose time is ``<= now``, or None before ``start``."""
        estimate = (round(now * 1_000_000) - self.start_us) // self.period_us
        slot = max(0, estimate)
        while self.slot_time(slot + 1) <= now:  # correct the float rounding of ``now``
            slot += 1
        while slot >= 0 and self.slot_time(slot) > now:
            slot -= 1
        return slot if slot >= 0 else None

    def next_after(self, now: float) -> int:
        """The first slot whose time is ``> now``."""
        latest = self.latest_due(now)
        return 0 if latest is None else latest + 1

    # -- the queue's view ------------------------------------------------------------------
    @property
    def dedupe_key(self) -> str:
        return f"{DEDUPE_PREFIX}{self.name}"

    def job_id(self, slot: int) -> str:
        """``sched-<name>-<YYYYMMDDTHHMMSS>Z``, with ``.ffffff`` before the Z off the second."""
        return f"{JOB_ID_PREFIX}{self.name}-{slot_stamp(self.slot_datetime(slot))}"

    def slot_of(self, job_id: str) -> int | None:
        """The slot whose job has id ``job_id``, or None if it is no slot job of this schedule."""
        prefix = f"{JOB_ID_PREFIX}{self.name}-"
        if not job_id.startswith(prefix):
            return None
        moment = parse_slot_stamp(job_id[len(prefix) :])
        if moment is None:
            return None
        slot, offset = divmod((moment - EPOCH) // _MICROSECOND - self.start_us, self.period_us)
        return slot if offset == 0 and slot >= 0 else None

    def job(self, slot: int, now: float) -> Job:
        """Slot ``slot``'s job: the task's policy, the deterministic id, due at the slot time."""
        job_id = self.job_id(slot)
        made = self.task.job(
            self.encoded_payload,
            dedupe_key=self.dedupe_key,
            correlation_id=job_id,
            metadata={"schedule": self.name, "slot": self.slot_datetime(slot).isoformat()},
        )
        return replace(
            made, id=job_id, not_before=self.slot_time(slot), created_at=now, updated_at=now
        )


def slot_stamp(moment: datetime) -> str:
    """``YYYYMMDDTHHMMSSZ`` in UTC, with ``.ffffff`` before the Z when off the whole second."""
    m = moment.astimezone(UTC)
    stamp = f"{m.year:04d}{m.month:02d}{m.day:02d}T{m.hour:02d}{m.minute:02d}{m.second:02d}"
    if m.microsecond:
        stamp += f".{m.microsecond:06d}"
    return stamp + "Z"


def parse_slot_stamp(stamp: str) -> datetime | None:
    """The UTC time a :func:`slot_stamp` stands for, or None if ``stamp`` is not one."""
    for layout in ("%Y%m%dT%H%M%SZ", "%Y%m%dT%H%M%S.%fZ"):
        try:
            moment = datetime.strptime(stamp, layout).replace(tzinfo=UTC)
        except ValueError:
            continue
        return moment if slot_stamp(moment) == stamp else None
    return None


def _catch_up(name: str, value: object) -> CatchUp:
    if isinstance(value, str) and value in CatchUp.__members__.values():
        return CatchUp(value)
    allowed = ", ".join(repr(policy.value) for policy in CatchUp)
    raise ValueError(f"schedule {name}: unknown catch_up {value!r}; use one of {allowed}")
