"""Large buffers (numpy arrays) cross the process boundary through POSIX shared memory.

Messages between the parent and its own children are pickled (acceptable here: both ends are our
own process pair started from the same code; nothing from a queue or a miner is ever unpickled
on this path). They are pickled with protocol 5 and a ``buffer_callback``: every contiguous
buffer an object hands out-of-band (a numpy array does so for its data) of at least
``threshold`` bytes is left out of the pickle; the sender copies it into a shared-memory segment
and sends only the segment's name and size. The receiver maps the segment and gives the
mapping to ``pickle.loads(buffers=...)``, so numpy rebuilds the array *on* the mapping: no copy.
Smaller buffers, and arrays that are not contiguous, travel inside the pickle as usual.

Consequences for callers: an array the function receives is a view of a shared segment, valid
for the call (a function must not keep it: the segment may carry a later task's argument); an
array returned to the caller is a view of a segment the caller alone now uses, independent of
the arrays it passed in, and freed when the caller drops it.

The pickling itself stays in C: the callback runs only for buffers, never per object, so a call
with no array costs the same as plain ``pickle.dumps``. numpy is never imported here; when an
array is present numpy is already loaded and is used for copies that release the GIL.

Segments are opened with ``_posixshmem`` and ``mmap`` directly rather than through
``multiprocessing.shared_memory.SharedMemory``: on Python 3.11 every ``SharedMemory`` object,
including one that merely attaches, registers the segment with the resource tracker, which then
unlinks it (with a "leaked shared_memory" warning) when that process exits, under the owner's
feet (cpython gh-82300; ``track=False`` only arrived in 3.13). Here the parent, which owns every
segment (its own, and those a child announces before creating them), registers each name exactly
once and unregisters it when it unlinks it, so the tracker only ever cleans up after the parent
itself was killed.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import sys
from multiprocessing import resource_tracker
from typing import NamedTuple

try:
    import _posixshmem
except ImportError:  # not a POSIX system: buffers are pickled like everything else
    _posixshmem = None

SHARED_MEMORY_AVAILABLE = _posixshmem is not None
_TRACKER_TYPE = "shared_memory"
_PROTOCOL = 5
_WRITE_CHUNK = 1 << 30


class SharedBuffer(NamedTuple):
    """An out-of-band buffer as sent: the segment holding it and its size in bytes."""

    name: str
    nbytes: int


def segment_prefix(parent_pid: int) -> str:
    """The name prefix of every segment belonging to the pool in process ``parent_pid``."""
    return f"/gpp{parent_pid:x}_"


def new_segment_name(parent_pid: int) -> str:
    return f"{segment_prefix(parent_pid)}{os.urandom(5).hex()}"


def encode(obj: object, threshold: int) -> tuple[bytes, list[memoryview]]:
    """Pickle ``obj``; return the pickle and the raw bytes of every buffer left out of it."""
    if not SHARED_MEMORY_AVAILABLE:
        return pickle.dumps(obj, protocol=_PROTOCOL), []
    buffers: list[memoryview] = []

    def keep_out(buffer: pickle.PickleBuffer) -> bool:
        try:
            raw = buffer.raw()
        except BufferError:  # not contiguous: pickle it in-band
            return True
        if raw.nbytes < threshold:
            return True
        buffers.append(raw)
        return False

    return pickle.dumps(obj, protocol=_PROTOCOL, buffer_callback=keep_out), buffers


def decode(data: bytes | memoryview, buffers: list[memoryview]) -> object:
    """Unpickle, giving the out-of-band buffers (mapped segments) back in order."""
    return pickle.loads(data, buffers=buffers)


def pack_descriptors(descriptors: list[SharedBuffer]) -> bytes:
    return pickle.dumps([tuple(d) for d in descriptors], protocol=_PROTOCOL) if descriptors else b""


def unpack_descriptors(data: bytes | memoryview) -> list[SharedBuffer]:
    if not data:
        return []
    return [SharedBuffer(str(name), int(nbytes)) for name, nbytes in pickle.loads(data)]


def create_segment(name: str, size: int) -> int:
    """Create a segment of ``size`` bytes and return its fd (the caller closes it)."""
    assert _posixshmem is not None
    fd: int = _posixshmem.shm_open(name, os.O_CREAT | os.O_EXCL | os.O_RDWR, mode=0o600)
    try:
        os.ftruncate(fd, size)
    except OSError:
        os.close(fd)
        _posixshmem.shm_unlink(name)
        raise
    return fd


def track_segment(name: str) -> None:
    """Have the resource tracker unlink ``name`` if the whole process tree dies first."""
    resource_tracker.register(name, _TRACKER_TYPE)


def open_segment(name: str) -> int:
    """Open an existing segment read-write and return its fd (the caller closes it)."""
    assert _posixshmem is not None
    fd: int = _posixshmem.shm_open(name, os.O_RDWR, mode=0o600)
    return fd


def map_segment(name: str, size: int, *, populate: bool) -> mmap.mmap:
    """Map an existing segment read-write; ``populate`` pre-faults every page (MAP_POPULATE)."""
    fd = open_segment(name)
    try:
        flags = mmap.MAP_SHARED
        if populate and hasattr(mmap, "MAP_POPULATE"):
            flags |= mmap.MAP_POPULATE
        return mmap.mmap(fd, size, flags=flags)
    finally:
        os.close(fd)


def unlink_segment(name: str) -> None:
    """Remove a segment's name (mappings stay valid until unmapped) and unregister it."""
    assert _posixshmem is not None
    with contextlib.suppress(FileNotFoundError):  # announced by a child that died first
        _posixshmem.shm_unlink(name)
    resource_tracker.unregister(name, _TRACKER_TYPE)


def write_buffer(fd: int, raw: memoryview) -> None:
    """Write bytes into a segment through its fd: no mapping needed, the GIL is released, and
    a full /dev/shm is a clean ENOSPC error. For fresh pages this is also the fastest way."""
    offset = 0
    while offset < raw.nbytes:
        offset += os.pwrite(fd, raw[offset : offset + _WRITE_CHUNK], offset)


def copy_buffer(target: mmap.mmap, raw: memoryview) -> None:
    """Copy bytes into a mapping whose pages all exist (stores into holes of a full /dev/shm
    would raise SIGBUS). With numpy loaded the copy releases the GIL."""
    numpy = sys.modules.get("numpy")
    if numpy is None:
        memoryview(target)[: raw.nbytes] = raw
        return
    destination = numpy.frombuffer(target, dtype=numpy.uint8, count=raw.nbytes)
    numpy.copyto(destination, numpy.frombuffer(raw, dtype=numpy.uint8))
    del destination


def address_of(buffer: mmap.mmap | memoryview) -> int | None:
    """The memory address of a writable buffer (None for a read-only one)."""
    import ctypes

    try:
        anchor = ctypes.c_char.from_buffer(buffer)
    except TypeError:
        return None
    address = ctypes.addressof(anchor)
    del anchor
    return address
