"""One record per ``run()`` call, and the decoding of what a child sends back for it.

A record's *future* is what the caller awaits; it may be settled before the record is
*finished*: a timed-out, over-limit or cancelled task fails at once, but the memory it held and
its shared segments are only given back when its child is confirmed gone. ``finished`` marks
that second moment, so nothing is released twice or too early.

The future's value is a one-element list the caller empties: an asyncio future keeps its result
alive for as long as the awaiting task's current step runs, which would keep a returned array's
shared segment looking "in use" after the caller dropped it.
"""

from __future__ import annotations

import asyncio
import pickle
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import channel, shm
from .errors import RemoteError
from .segments import Segment, SegmentStore

if TYPE_CHECKING:
    from .workers import Worker


@dataclass(eq=False, slots=True)
class TaskRecord:
    """Everything the pool knows about one call."""

    task_id: int
    function: str
    call: bytes  # pickled (fn, args, kwargs); large buffers left out of it, see ``buffers``
    buffers: bytes  # packed descriptors of the segments holding the out-of-band buffers
    estimate: int
    estimate_source: str
    timeout: float | None
    future: asyncio.Future[list[object]]
    segments: list[Segment] = field(default_factory=list)
    worker: Worker | None = None
    started_at: float | None = None
    last_rss: int | None = None
    peak_rss: int = 0
    reported_peak: int = 0
    oom_kills_at_start: int | None = None
    timer: asyncio.TimerHandle | None = None
    cancel_requested: bool = False  # the caller gave up while the task waited in a child
    finished: bool = False
    ended_by: str = ""  # "result", "error", "timeout", "memory", "cancelled", "crash", "closed"

    def settle(self, *, value: object = None, error: BaseException | None = None) -> bool:
        """Resolve the caller's future once; False if it was already resolved (or cancelled)."""
        if self.future.done():
            return False
        if error is not None:
            self.future.set_exception(error)
        else:
            self.future.set_result([value])
        return True

    def observed_peak(self) -> int:
        """The best known peak RSS of this run: the child's own high-water mark or our samples."""
        return max(self.peak_rss, self.reported_peak)

    def elapsed(self) -> float:
        return 0.0 if self.started_at is None else time.monotonic() - self.started_at


def function_name(fn: object) -> str:
    """``module.qualname`` of a function (the key of learned memory estimates)."""
    target = getattr(fn, "func", fn)  # functools.partial
    module = getattr(target, "__module__", None) or "?"
    name = getattr(target, "__qualname__", None) or type(target).__qualname__
    return f"{module}.{name}"


def decode_result(frame: bytes, record: TaskRecord, store: SegmentStore) -> object:
    """The value in a RESULT frame, rebuilt on the mapped segments (no copy of array data)."""
    _, _, _, header_size = channel.ANSWER_HEAD.unpack_from(frame, 1)
    body = memoryview(frame)[1 + channel.ANSWER_HEAD.size :]
    if not header_size:
        return shm.decode(body, [])
    descriptors = shm.unpack_descriptors(body[:header_size])
    buffers = [store.view(shared, record.segments) for shared in descriptors]
    return shm.decode(body[header_size:], buffers)


def decode_error(frame: bytes, pid: int) -> BaseException:
    """The exception in an ERROR frame: the original rebuilt if safe, else a RemoteError.

    The rebuilt original gets the RemoteError (with the child's formatted traceback) as its
    ``__cause__``, so printing it shows both sides.
    """
    body = frame[1 + channel.ANSWER_HEAD.size :]
    type_name, message, text, rebuilt = pickle.loads(body)
    remote = RemoteError(type_name, message, f"(child {pid})\n{text}")
    if rebuilt is None:
        return remote
    try:
        original = pickle.loads(rebuilt)
    except Exception:
        return remote
    if not isinstance(original, Exception):
        return remote
    original.__cause__ = remote
    return original
