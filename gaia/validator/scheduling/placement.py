"""Putting one slot's job into a queue, idempotently, whoever else is trying the same slot.

The slot's job id is deterministic, so the queue itself records which slots were enqueued: a
slot whose id is stored (in any status, until the queue's result retention purges it) is not
enqueued again. The dedupe key ``schedule:<name>`` lets at most one run of the schedule be
active: while another is (queued, running or waiting for a retry), the enqueue stores nothing and
the queue returns that active job, which blocks the slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from gaia.validator.core.errors import DuplicateJob
from gaia.validator.core.job import Job
from gaia.validator.core.queue import Queue
from gaia.validator.core.status import JobStatus
from gaia.validator.scheduling.schedule import Schedule


class Placement(StrEnum):
    ENQUEUED = "enqueued"
    """The slot's job is queued now: stored by this call (or, the queue cannot always tell, by
    a scheduler racing it to the slot)."""
    PRESENT = "present"
    """The slot's job was in the queue already (enqueued earlier, running or finished)."""
    BLOCKED = "blocked"
    """Another run of the schedule is active; nothing was stored."""


@dataclass(frozen=True)
class SlotPlacement:
    placement: Placement
    job: Job
    """The slot's stored job, or (BLOCKED) the active job that holds the schedule's key."""


async def place_slot(queue: Queue, schedule: Schedule, slot: int, now: float) -> SlotPlacement:
    """Enqueue ``schedule``'s job for ``slot`` unless it is stored already or another run of
    the schedule is active. Errors of the queue propagate (the caller retries)."""
    job_id = schedule.job_id(slot)
    stored = await queue.get(job_id)
    if stored is not None:  # most repeats end here, without an enqueue attempt to refuse
        return SlotPlacement(Placement.PRESENT, stored)
    try:
        kept = await queue.enqueue(schedule.job(slot, now))
    except DuplicateJob:
        # Another scheduler stored this slot since the get() above. Confirmed by reading it
        # back: a refusal for any other reason is re-raised.
        stored = await queue.get(job_id)
        if stored is None:
            raise
        return SlotPlacement(Placement.PRESENT, stored)
    if kept.id != job_id:
        return SlotPlacement(Placement.BLOCKED, kept)
    if kept.status is JobStatus.QUEUED:
        return SlotPlacement(Placement.ENQUEUED, kept)
    return SlotPlacement(Placement.PRESENT, kept)  # a backend may answer a repeat with the job
