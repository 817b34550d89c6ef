"""Numpy arrays cross the process boundary through POSIX shared memory, not inside the pickle.

Messages between the parent and its own children are pickled (acceptable here: both ends are our
own process pair started from the same code; nothing from a queue or a miner is ever unpickled
on this path). While pickling, every plain ``numpy.ndarray`` of at least ``threshold`` bytes is
replaced by a small :class:`SharedArray` descriptor (segment name, shape, dtype, order); the data
goes into a shared-memory segment and the receiver maps that segment instead of unpickling bytes.

numpy is never imported here unless an array is actually present: the encoder only looks for
arrays when numpy is already in ``sys.modules`` (an array cannot exist otherwise), and the
decoder imports numpy only when a descriptor is met.

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
import io
import mmap
import os
import pickle
import sys
from collections.abc import Callable
from multiprocessing import resource_tracker
from typing import TYPE_CHECKING, Literal, NamedTuple, cast

if TYPE_CHECKING:
    import numpy as np
    from numpy.typing import DTypeLike

try:
    import _posixshmem
except ImportError:  # not a POSIX system: arrays are pickled like everything else
    _posixshmem = None

SHARED_MEMORY_AVAILABLE = _posixshmem is not None
_TRACKER_TYPE = "shared_memory"
_PROTOCOL = pickle.HIGHEST_PROTOCOL
_WRITE_CHUNK = 1 << 30


class SharedArray(NamedTuple):
    """Where an array's data is: a segment name and the layout to rebuild it."""

    name: str
    shape: tuple[int, ...]
    dtype: object  # a numpy.dtype; typed loosely so this module needs no numpy at import
    order: Literal["C", "F"]
    nbytes: int


def segment_prefix(parent_pid: int) -> str:
    """The name prefix of every segment belonging to the pool in process ``parent_pid``."""
    return f"/gpp{parent_pid:x}_"


def new_segment_name(parent_pid: int) -> str:
    return f"{segment_prefix(parent_pid)}{os.urandom(5).hex()}"


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


def describe(array: np.ndarray, name: str) -> SharedArray:
    """The descriptor of ``array`` once copied into segment ``name`` (F order kept if native)."""
    flags = array.flags
    order: Literal["C", "F"] = "F" if flags.f_contiguous and not flags.c_contiguous else "C"
    return SharedArray(name, tuple(array.shape), array.dtype, order, int(array.nbytes))


def array_view(buffer: mmap.mmap, descriptor: SharedArray) -> np.ndarray:
    """An ndarray over ``buffer`` (no copy); it keeps the mapping alive while it lives."""
    import numpy as np

    dtype = cast("DTypeLike", descriptor.dtype)
    return np.ndarray(descriptor.shape, dtype=dtype, buffer=buffer, order=descriptor.order)


def copy_into(buffer: mmap.mmap, array: np.ndarray, descriptor: SharedArray) -> None:
    """Copy ``array`` into a mapped segment (one memcpy for a contiguous array).

    Only for pages that already exist (were written before): storing through a mapping into a
    hole of a full /dev/shm raises SIGBUS, whereas ``write_array`` gets a clean ENOSPC error.
    """
    import numpy as np

    target = array_view(buffer, descriptor)
    np.copyto(target, array, casting="no")
    del target


def write_array(fd: int, array: np.ndarray, descriptor: SharedArray) -> None:
    """Write ``array`` into a segment through its fd (no mapping needed; a full /dev/shm is a
    clean OSError here). For fresh pages this is also faster than storing through a mapping."""
    import numpy as np

    contiguous = np.asfortranarray if descriptor.order == "F" else np.ascontiguousarray
    source = contiguous(array)
    # ravel(order="K") of a contiguous array is a view in memory order: its bytes, no copy.
    data = source.ravel(order="K").view(np.uint8).data if source.nbytes else memoryview(b"")
    offset = 0
    while offset < len(data):
        offset += os.pwrite(fd, data[offset : offset + _WRITE_CHUNK], offset)


def _shared_array_placeholder(descriptor: SharedArray) -> object:
    """Stands for a shared array in a pickle; only the pool's decoder may resolve it."""
    raise pickle.UnpicklingError(
        f"shared array {descriptor.name} can only be decoded by the process pool"
    )


class _ArrayPickler(pickle.Pickler):
    """Pickler that hands large plain ndarrays to ``place`` instead of pickling their data."""

    def __init__(
        self, file: io.BytesIO, threshold: int, place: Callable[[np.ndarray], SharedArray]
    ) -> None:
        super().__init__(file, protocol=_PROTOCOL)
        self._threshold = threshold
        self._place = place
        self._ndarray = sys.modules["numpy"].ndarray

    def reducer_override(self, obj: object) -> object:  # type: ignore[override]
        # Called by the C pickler only for objects that are not of a built-in type.
        if type(obj) is not self._ndarray:
            return NotImplemented
        array: np.ndarray = obj  # type: ignore[assignment]
        if array.nbytes < self._threshold or array.dtype.hasobject:
            return NotImplemented
        return (_shared_array_placeholder, (self._place(array),))


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that resolves shared-array placeholders through ``attach``."""

    def __init__(self, file: io.BytesIO, attach: Callable[[SharedArray], object]) -> None:
        super().__init__(file)
        self._attach = attach

    def find_class(self, module: str, name: str) -> object:
        if name == "_shared_array_placeholder" and module == __name__:
            return self._attach
        return super().find_class(module, name)


def encode(
    obj: object, *, threshold: int, place: Callable[[np.ndarray], SharedArray] | None
) -> bytes:
    """Pickle ``obj``; arrays of ``threshold`` bytes or more go through ``place``."""
    if place is None or "numpy" not in sys.modules or not SHARED_MEMORY_AVAILABLE:
        return pickle.dumps(obj, protocol=_PROTOCOL)
    buffer = io.BytesIO()
    _ArrayPickler(buffer, threshold, place).dump(obj)
    return buffer.getvalue()


def decode(data: bytes, offset: int, attach: Callable[[SharedArray], object]) -> object:
    """Unpickle ``data[offset:]`` (without copying it), mapping shared arrays via ``attach``."""
    stream = io.BytesIO(data)
    stream.seek(offset)
    return _ArrayUnpickler(stream, attach).load()
