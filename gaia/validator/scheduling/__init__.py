"""Recurring jobs: schedules of slots, enqueued once each by any number of schedulers.

A :class:`Schedule` names a task, a payload and a cadence (slots ``start + k * every``) and a
:class:`CatchUp` policy for slots missed during downtime or while the previous run was still
active. A :class:`Scheduler` enqueues each slot's job when it comes due. Slot jobs have
deterministic ids and share the dedupe key ``schedule:<name>``, so the queue itself records
what ran, and several schedulers (one per worker) need no leader. Standard library only.
"""

from gaia.validator.scheduling.placement import Placement, SlotPlacement, place_slot
from gaia.validator.scheduling.schedule import CatchUp, Schedule, ScheduledTask
from gaia.validator.scheduling.scheduler import Scheduler

__all__ = [
    "CatchUp",
    "Placement",
    "Schedule",
    "ScheduledTask",
    "Scheduler",
    "SlotPlacement",
    "place_slot",
]
