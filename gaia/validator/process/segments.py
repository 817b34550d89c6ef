"""The parent's register of shared-memory segments: it owns, reuses and always unlinks them.

Every segment name the pool ever uses passes through here: segments the parent creates for
arguments, and segments a child announces (before creating them) for results. When a task ends,
however it ends, its segments are handed back with :meth:`SegmentStore.finish`; a segment is then

* *lent* if an array returned to the caller still views its mapping (the name stays, the memory is
  the caller's until the last view is dropped), or
* *free*: kept (with the parent's mapping, once it has one) for reuse by a later argument of
  similar size, up to ``cache_bytes`` in total; beyond that it is unmapped and unlinked.

Reuse matters: writing into fresh shared memory costs page faults and zeroing of every page
(several times the cost of the copy itself on a VM); a free segment is already resident and
mapped, so passing an array through it is one memcpy. A lent segment becomes free again once the
caller's arrays are gone, which is detected from the reference count of its mapping (an array
numpy rebuilt on the mapping holds a memoryview of it, and views of that array hold the array).
CPython only.

Arrays the pool hands out live on after :meth:`close`: their names are unlinked but mappings stay
valid until the arrays are dropped.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import sys
from dataclasses import dataclass

from . import shm

_PAGE = mmap.PAGESIZE


@dataclass(eq=False)
class Segment:
    """One named segment; ``mapping`` is the parent's own mapping, made on first use."""

    name: str
    size: int
    mapping: mmap.mmap | None = None
    in_task: bool = True
    backed: int = 0  # bytes from the start known to exist (written at least once)


class SegmentStore:
    """Create, adopt, reuse and unlink the pool's segments (event-loop thread only, except fill)."""

    def __init__(self, parent_pid: int, cache_bytes: int) -> None:
        self._parent_pid = parent_pid
        self._cache_bytes = cache_bytes
        self._segments: dict[str, Segment] = {}
        self._free: list[Segment] = []
        self._lent: list[Segment] = []

    @property
    def prefix(self) -> str:
        return shm.segment_prefix(self._parent_pid)

    def counts(self) -> dict[str, int]:
        return {
            "segments": len(self._segments),
            "free": len(self._free),
            "lent": len(self._lent),
            "free_bytes": sum(segment.size for segment in self._free),
        }

    def allocate(self, nbytes: int) -> Segment:
        """A segment of at least ``nbytes`` for a task: a free one of similar size, or a new one."""
        self.reclaim()
        best: Segment | None = None
        for segment in self._free:
            if nbytes <= segment.size <= max(2 * nbytes, nbytes + 16 * 2**20) and (
                best is None or segment.size < best.size
            ):
                best = segment
        if best is not None:
            self._free.remove(best)
            best.in_task = True
            return best
        size = max(_PAGE, -(-nbytes // _PAGE) * _PAGE)
        name = shm.new_segment_name(self._parent_pid)
        os.close(shm.create_segment(name, size))
        shm.track_segment(name)
        segment = Segment(name, size)
        self._segments[name] = segment
        return segment

    @staticmethod
    def fill(segment: Segment, raw: memoryview) -> None:
        """Copy ``raw`` into ``segment``; safe in a worker thread (the task owns the segment).

        Through the existing mapping when every page already exists (the fast, reused case);
        otherwise with write(2), which allocates pages without faulting and fails cleanly with
        ENOSPC, where a store through a mapping would raise SIGBUS.
        """
        if raw.nbytes <= segment.backed:
            if segment.mapping is None:
                segment.mapping = shm.map_segment(segment.name, segment.size, populate=True)
            shm.copy_buffer(segment.mapping, raw)
            return
        fd = shm.open_segment(segment.name)
        try:
            shm.write_buffer(fd, raw)
        finally:
            os.close(fd)
        segment.backed = max(segment.backed, raw.nbytes)

    def adopt(self, name: str) -> Segment:
        """Take ownership of a segment a child is about to create for a result."""
        if not name.startswith(self.prefix):
            raise ValueError(f"child announced a segment outside this pool: {name!r}")
        segment = self._segments.get(name)
        if segment is None:
            segment = Segment(name, 0)
            self._segments[name] = segment
            shm.track_segment(name)
        return segment

    def view(self, shared: shm.SharedBuffer, owned: list[Segment]) -> memoryview:
        """The bytes a descriptor names, mapped; only the task's own segments may be named."""
        segment = self._segments.get(shared.name)
        if segment is None or all(segment is not mine for mine in owned):
            raise ValueError(f"result refers to a segment this task does not own: {shared.name!r}")
        if segment.mapping is None:
            # A child's result segment, fully written before the result was sent, or one of
            # the task's argument segments (written by fill before the task was sent).
            segment.size = max(segment.size, shared.nbytes)
            segment.backed = max(segment.backed, shared.nbytes)
            segment.mapping = shm.map_segment(shared.name, segment.size, populate=True)
        return memoryview(segment.mapping)[: shared.nbytes]

    def finish(self, segments: list[Segment]) -> None:
        """A task is over: each of its segments becomes lent, free, or is destroyed."""
        if not segments:
            return
        for segment in segments:
            if not segment.in_task or segment.name not in self._segments:
                continue
            segment.in_task = False
            if segment.mapping is not None and _referenced(segment.mapping):
                self._lent.append(segment)
            else:
                self._keep_or_destroy(segment)
        self._trim()

    def reclaim(self) -> None:
        """Lent segments whose arrays are all gone become free (or are destroyed)."""
        if not self._lent:
            return
        still_lent: list[Segment] = []
        for segment in self._lent:
            if segment.mapping is not None and _referenced(segment.mapping):
                still_lent.append(segment)
            else:
                self._keep_or_destroy(segment)
        self._lent = still_lent
        self._trim()

    def close(self) -> None:
        """Unlink every name; free mappings are closed, lent ones stay with their arrays."""
        for segment in list(self._segments.values()):
            self._destroy(segment)
        self._free.clear()
        self._lent.clear()

    def _keep_or_destroy(self, segment: Segment) -> None:
        if segment.backed == 0 or segment.size > self._cache_bytes:
            self._destroy(segment)
        else:
            self._free.append(segment)

    def _trim(self) -> None:
        total = sum(segment.size for segment in self._free)
        while self._free and total > self._cache_bytes:
            oldest = self._free.pop(0)
            total -= oldest.size
            self._destroy(oldest)

    def _destroy(self, segment: Segment) -> None:
        self._segments.pop(segment.name, None)
        mapping, segment.mapping = segment.mapping, None
        if mapping is not None and not _referenced(mapping):
            with contextlib.suppress(BufferError):  # an array still views it: unmapped later
                mapping.close()
        shm.unlink_segment(segment.name)


def _referenced(mapping: mmap.mmap) -> bool:
    """True if something besides the store (and this call) holds ``mapping``.

    The expected count is three: the holder the caller passed it from (a Segment attribute or a
    local), the argument of this function and the argument of getrefcount.
    """
    return sys.getrefcount(mapping) > 3
