"""Key layout of one Redis queue. Every key starts with ``gaia:{<queue name>}:``.

The braces are a cluster hash tag: all keys of one queue hash to one slot, which the Lua
functions need (they touch many keys of their queue; each call names the prefix as its key, so
a cluster routes it to that slot). The Lua library (:mod:`.scripts`) builds the same names from
the same prefix; this module is the Python side, used for reads, blocking waits and tests.

==============================  ======  ===========================================================
key (after the prefix)          type    content
==============================  ======  ===========================================================
``format``                      string  the stored format of the queue (:data:`STORED_FORMAT`)
``job:<id>``                    hash    the job record (see :mod:`.records`)
``ready:<type>``                zset    due jobs; score ``-priority``, member ``order_member``
``delayed:<type>``              zset    queued or retry-scheduled jobs not yet due; score not_before
``idx:<type>:<status>``         zset    queued or retry-scheduled jobs; score enqueue sequence
``leases:<type>``               zset    running jobs; score lease expiry in whole microseconds
                                        (the reaper reads it)
``done:<type>:<status>``        zset    succeeded, cancelled, dead jobs; score end of retention in
                                        whole microseconds (``+inf``: kept until requeued); the
                                        reaper deletes the records past it (no Redis EXPIRE)
``dedupe``                      hash    dedupe key -> id of the active job holding it
``types``                       set     every job type ever enqueued
``seq``                         string  enqueue sequence counter
``wake:<type>`` / ``wake``      list    wake-up tokens for claimers of one type / of all types
==============================  ======  ===========================================================

Each job is in exactly one of the status sets (``idx``, ``leases``, ``done``), so counts by type
and status are their sizes, and each step moves a job between two of them.

Stored formats: 1 (before ``format`` existed) kept the whole record as JSON in ``spec`` beside a
dozen plain fields; 2 keeps the fields no step changes in ``spec`` and the others in two short
lines, ``state`` and ``info`` (see :mod:`.records`). Opening a queue whose keys hold
another format fails with :class:`StoredFormatError` rather than misreading them: drain such a
queue with the version that wrote it, or delete its keys (``gaia:{<name>}:*``). There is no
automatic migration.

Ready order: members of equal score (equal priority) sort lexicographically, so the member
``<not_before in microseconds, 17 digits>:<sequence, 15 digits>:<id>`` orders by due time, then
enqueue order. Due times are compared to the microsecond, and so are lease expiries and
retention ends (integer scores are stored as integers: inserting into a small set compares
numbers instead of parsing each member's score text).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from gaia.validator.core.errors import GaiaError

STORED_FORMAT = "2"
QUEUE_NAME_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")
KEY_ROOT = "gaia"


@dataclass(frozen=True)
class QueueKeys:
    """Names of the keys of queue ``name``."""

    name: str

    def __post_init__(self) -> None:
        if not QUEUE_NAME_PATTERN.fullmatch(self.name):
            raise ValueError(
                f"redis queue name {self.name!r} must be 1-100 characters of letters, digits, "
                f"'_', '.' or '-'"
            )

    @property
    def prefix(self) -> str:
        return f"{KEY_ROOT}:{{{self.name}}}:"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}job:{job_id}"

    def ready(self, job_type: str) -> str:
        return f"{self.prefix}ready:{job_type}"

    def delayed(self, job_type: str) -> str:
        return f"{self.prefix}delayed:{job_type}"

    def index(self, job_type: str, status: str) -> str:
        """The sorted set listing the jobs of ``job_type`` in ``status``."""
        if status == "running":
            return f"{self.prefix}leases:{job_type}"
        if status in ("succeeded", "cancelled", "dead"):
            return f"{self.prefix}done:{job_type}:{status}"
        return f"{self.prefix}idx:{job_type}:{status}"

    def wake(self, job_type: str | None) -> str:
        """The wake-up list of claimers of ``job_type``; None: of claimers of every type."""
        return f"{self.prefix}wake" if job_type is None else f"{self.prefix}wake:{job_type}"

    @property
    def format(self) -> str:
        return f"{self.prefix}format"

    @property
    def dedupe(self) -> str:
        return f"{self.prefix}dedupe"

    @property
    def types(self) -> str:
        return f"{self.prefix}types"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of this queue."""
        return f"{self.prefix}*"


class StoredFormatError(GaiaError):
    """The queue's keys were written in another stored format than this code reads."""
