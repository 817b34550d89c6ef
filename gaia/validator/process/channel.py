"""Framed messages over a Unix socket pair between the parent and one child.

A frame is an 8-byte big-endian length, then that many bytes: one kind byte and the body. The
parent end is non-blocking and driven by the event loop (``loop.add_reader``): a readable socket
costs one ``recv`` and runs the frame callback right there, with no thread hop and no extra task,
which is the cheapest wake-up asyncio offers for tiny tasks. Writes go straight to the socket and
only fall back to ``add_writer`` when the kernel buffer is full, so the loop never blocks. The
child end is plain blocking I/O: the child has nothing else to do while it waits.
"""

from __future__ import annotations

import socket
import struct
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

_LENGTH = struct.Struct("!Q")
RUN_HEAD = struct.Struct("!QI")  # task id, size of the shared-buffer descriptors
# task id, peak RSS bytes (0 = no new peak), seconds the function ran, descriptors size
ANSWER_HEAD = struct.Struct("!QQdI")
_SMALL = 64 * 1024
_READ_CHUNK = 256 * 1024
_MAX_BUFFERS = 512  # buffers per sendmsg call (IOV_MAX is at least 1024 on Linux)

# Message kinds, parent -> child.
RUN = b"X"  # RUN_HEAD, shared-buffer descriptors, pickled call
CANCEL = b"C"  # task id: drop it if it has not started
# Message kinds, child -> parent.
READY = b"R"  # pid, seconds spent on preload and initializer
INIT_FAILED = b"I"  # formatted traceback of the preload or initializer
SEGMENT = b"S"  # name of a result segment about to be created
RESULT = b"O"  # ANSWER_HEAD, shared-buffer descriptors, pickled value
ERROR = b"E"  # ANSWER_HEAD, pickled error report
SKIPPED = b"K"  # task id: cancelled before it started, never ran


def _frame(kind: bytes, parts: tuple[bytes | memoryview, ...]) -> list[bytes | memoryview]:
    size = len(kind) + sum(len(part) for part in parts)
    if size <= _SMALL:
        return [b"".join((_LENGTH.pack(size), kind, *parts))]
    return [_LENGTH.pack(size) + kind, *parts]


class Channel:
    """The parent's end: non-blocking, frames delivered to ``on_frame`` as they complete.

    Frames sent during one pass of the event loop go out together in one ``sendmsg`` at the end
    of it: waking a sleeping child is the most expensive part of a tiny task (a cross-CPU
    wake-up, costlier still in a VM), so a burst of dispatches costs one wake-up, not one each.
    """

    def __init__(
        self,
        sock: socket.socket,
        loop: asyncio.AbstractEventLoop,
        on_frame: Callable[[bytes], None],
        on_closed: Callable[[], None],
    ) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._fd = sock.fileno()
        self._loop = loop
        self._on_frame = on_frame
        self._on_closed = on_closed
        self._buffer = bytearray()
        self._outgoing: deque[memoryview] = deque()
        self._flush_scheduled = False
        self._writer_added = False
        self._open = False
        self._eof = False

    def open(self) -> None:
        self._open = True
        self._loop.add_reader(self._fd, self._on_readable)

    @property
    def is_open(self) -> bool:
        return self._open

    def send(self, kind: bytes, *parts: bytes | memoryview) -> None:
        """Queue one frame; it is written at the end of this pass of the event loop."""
        if not self._open:
            raise ConnectionError("channel to the child is closed")
        self._outgoing.extend(memoryview(buffer).cast("B") for buffer in _frame(kind, parts))
        if not self._flush_scheduled and not self._writer_added:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def drain(self) -> None:
        """Read and deliver everything the child wrote before it died (non-blocking)."""
        while self._open and not self._eof:
            if not self._read_once():
                return

    def close(self) -> None:
        """Stop reading and writing and close the socket; the child sees end-of-file."""
        if not self._open:
            return
        self._open = False
        self._loop.remove_reader(self._fd)
        if self._writer_added:
            self._loop.remove_writer(self._fd)
            self._writer_added = False
        self._outgoing.clear()
        self._sock.close()

    def _on_readable(self) -> None:
        self._read_once()

    def _read_once(self) -> bool:
        try:
            data = self._sock.recv(_READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            data = b""
        if not data:
            self._eof = True
            self._loop.remove_reader(self._fd)
            self._on_closed()
            return False
        self._deliver(data)
        return True

    def _deliver(self, data: bytes) -> None:
        buffer = self._buffer
        if not buffer and len(data) >= _LENGTH.size:
            # Fast path: the chunk starts at a frame boundary (the usual case for small frames).
            offset = 0
            end = len(data)
            while self._open and end - offset >= _LENGTH.size:
                (size,) = _LENGTH.unpack_from(data, offset)
                stop = offset + _LENGTH.size + size
                if stop > end:
                    break
                self._on_frame(data[offset + _LENGTH.size : stop])
                offset = stop
            if offset < end:
                buffer += data[offset:]
            return
        buffer += data
        offset = 0
        while self._open and len(buffer) - offset >= _LENGTH.size:
            (size,) = _LENGTH.unpack_from(buffer, offset)
            stop = offset + _LENGTH.size + size
            if stop > len(buffer):
                break
            frame = bytes(memoryview(buffer)[offset + _LENGTH.size : stop])
            offset = stop
            self._on_frame(frame)
        del buffer[:offset]

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._open or self._writer_added:
            return
        self._write()
        if self._outgoing:
            self._writer_added = True
            self._loop.add_writer(self._fd, self._on_writable)

    def _on_writable(self) -> None:
        self._write()
        if not self._outgoing:
            self._writer_added = False
            self._loop.remove_writer(self._fd)

    def _write(self) -> None:
        outgoing = self._outgoing
        while outgoing:
            batch = [outgoing[index] for index in range(min(len(outgoing), _MAX_BUFFERS))]
            try:
                sent = self._sock.sendmsg(batch)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                outgoing.clear()  # the child is gone; its exit is reported by its process handle
                return
            while sent > 0:
                head = outgoing[0]
                if sent >= len(head):
                    sent -= len(head)
                    outgoing.popleft()
                else:
                    outgoing[0] = head[sent:]
                    sent = 0
            if outgoing and len(batch) < _MAX_BUFFERS:
                return  # the kernel took less than offered: its buffer is full


def _skip(buffers: list[bytes | memoryview], sent: int) -> list[bytes | memoryview]:
    """What remains of ``buffers`` after the first ``sent`` bytes went out."""
    remaining: list[bytes | memoryview] = []
    for buffer in buffers:
        if sent >= len(buffer):
            sent -= len(buffer)
            continue
        remaining.append(memoryview(buffer)[sent:] if sent else buffer)
        sent = 0
    return remaining


class ChildEnd:
    """The child's end: blocking writes; reads that block or just look (``wait=False``)."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(True)
        self._sock = sock
        self._buffer = bytearray()
        self.closed = False

    def receive(self, *, wait: bool) -> bytes | None:
        """The next frame (kind byte first); None if none is there yet (``wait=False``) or the
        parent closed its end (then ``closed`` is set)."""
        while True:
            frame = self._take_frame()
            if frame is not None or self.closed:
                return frame
            try:
                data = self._sock.recv(_READ_CHUNK, 0 if wait else socket.MSG_DONTWAIT)
            except (BlockingIOError, InterruptedError):
                return None
            except OSError:
                data = b""
            if not data:
                self.closed = True
                return None
            self._buffer += data

    def _take_frame(self) -> bytes | None:
        buffer = self._buffer
        if len(buffer) < _LENGTH.size:
            return None
        (size,) = _LENGTH.unpack_from(buffer)
        stop = _LENGTH.size + size
        if len(buffer) < stop:
            return None
        frame = bytes(memoryview(buffer)[_LENGTH.size : stop])
        del buffer[:stop]
        return frame

    def send(self, kind: bytes, *parts: bytes | memoryview) -> None:
        buffers = _frame(kind, parts)
        while buffers:
            sent = self._sock.sendmsg(buffers)
            buffers = _skip(buffers, sent)
