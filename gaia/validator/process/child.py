"""The child side: one spawned process that runs one task at a time for its parent.

Lifecycle: tie our life to the parent's, run the warm-start preload (import the listed modules
once, then the optional initializer), say READY, then loop: receive a RUN frame, call the
function, send RESULT or ERROR. End-of-file on the socket means "exit now" (recycling or stop).

Messages are pickled: acceptable here because both ends are our own parent/child pair started
from the same code base; no bytes from a queue backend or a miner ever reach these unpicklers.

This module is imported in every child, so it imports nothing heavy: no asyncio, no numpy (shm
imports numpy only when an array is present), no psutil.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import os
import pickle
import signal
import socket
import struct
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import NamedTuple, cast

from . import channel, shm

_READY = struct.Struct("!Qd")  # pid, seconds spent starting (preload + initializer)
_WATCH_INTERVAL = 0.5
EXIT_PARENT_GONE = 75
_PR_SET_PDEATHSIG = 1
_Call = tuple[Callable[..., object], tuple[object, ...], dict[str, object]]


class ChildConfig(NamedTuple):
    """Everything a child needs, passed explicitly at spawn (nothing read from the environment)."""

    parent_pid: int
    preload: tuple[str, ...]
    initializer: Callable[..., object] | None
    initargs: tuple[object, ...]
    shm_threshold: int


def child_main(sock: socket.socket, config: ChildConfig) -> None:
    """Entry point of a spawned child (the ``target`` of its multiprocessing.Process)."""
    _die_with_parent(config.parent_pid)
    # Ctrl-C in a terminal reaches the whole process group; the parent decides what stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    end = channel.ChildEnd(sock)
    try:
        if _warm_up(end, config):
            _serve(end, _Runner(end, config))
    except (BrokenPipeError, ConnectionResetError):
        pass  # the parent closed our socket (pool stopping) or died: nothing left to do
    _exit_quickly()


def _exit_quickly() -> None:
    """Exit without tearing the interpreter down (module clean-up takes longer than the work
    of a short task, and recycling waits for it); atexit handlers and stdio flushing still run."""
    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(0)


def _warm_up(end: channel.ChildEnd, config: ChildConfig) -> bool:
    """Preload modules and run the initializer once; say READY (or why not)."""
    started = time.perf_counter()
    try:
        for module in config.preload:
            importlib.import_module(module)
        if config.initializer is not None:
            config.initializer(*config.initargs)
    except BaseException:
        import traceback

        end.send(channel.INIT_FAILED, traceback.format_exc().encode())
        return False
    end.send(channel.READY, _READY.pack(os.getpid(), time.perf_counter() - started))
    return True


def _serve(end: channel.ChildEnd, runner: _Runner) -> None:
    """Run tasks in arrival order until the parent closes the socket.

    The parent may send a few short tasks ahead (pipelining). Before each task every frame that
    has already arrived is read, so a CANCEL for a task that has not started yet is honoured:
    the task is dropped and reported SKIPPED, it never runs.
    """
    pending: deque[bytes] = deque()
    while True:
        frame = end.receive(wait=not pending)
        while frame is not None:
            kind = frame[:1]
            if kind == channel.RUN:
                pending.append(frame)
            elif kind == channel.CANCEL:
                _drop(pending, frame[1:], end)
            else:
                raise RuntimeError(f"unexpected frame kind {kind!r} from the parent")
            frame = end.receive(wait=False)
        if end.closed:
            return
        if pending:
            runner.run(pending.popleft())


def _drop(pending: deque[bytes], task_id: bytes, end: channel.ChildEnd) -> None:
    for frame in pending:
        if frame[1:9] == task_id:
            pending.remove(frame)
            end.send(channel.SKIPPED, task_id)
            return


def _die_with_parent(parent_pid: int) -> None:
    """Make sure this process does not outlive its parent, even a parent killed by SIGKILL.

    On Linux the kernel delivers SIGKILL to us when the parent exits (PR_SET_PDEATHSIG; it fires
    when the parent's *thread* that spawned us exits, which is the event-loop thread). A
    watchdog thread that polls ``os.getppid()`` covers other systems and the race where the
    parent died before prctl ran.
    """
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:
        os._exit(EXIT_PARENT_GONE)
    watcher = threading.Thread(
        target=_watch_parent, args=(parent_pid,), name="parent-watch", daemon=True
    )
    watcher.start()


def _watch_parent(parent_pid: int) -> None:
    while True:
        time.sleep(_WATCH_INTERVAL)
        if os.getppid() != parent_pid:
            os._exit(EXIT_PARENT_GONE)


try:
    import resource
except ImportError:  # not a Unix system: no peak reports, the parent's samples remain
    resource = None  # type: ignore[assignment]
_RSS_UNIT = 1 if sys.platform == "darwin" else 1024  # ru_maxrss is bytes on macOS, KiB elsewhere


def _max_rss_bytes() -> int:
    """This process's peak RSS so far (the kernel's high-water mark)."""
    if resource is None:
        return 0
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * _RSS_UNIT


class _Runner:
    """Runs one RUN frame at a time and sends back its result or error."""

    def __init__(self, end: channel.ChildEnd, config: ChildConfig) -> None:
        self._end = end
        self._config = config

    def run(self, frame: bytes) -> None:
        task_id, header_size = channel.RUN_HEAD.unpack_from(frame, 1)
        body = memoryview(frame)[1 + channel.RUN_HEAD.size :]
        before = _max_rss_bytes()
        # Segments mapped for this task's arguments: (address, size, name). An argument returned
        # unchanged goes back as a reference to the parent's segment instead of a copy.
        attached: list[tuple[int | None, int, str]] = []
        try:
            descriptors = shm.unpack_descriptors(body[:header_size])
            buffers = [self._attach(shared, attached) for shared in descriptors]
            fn, args, kwargs = cast(_Call, shm.decode(body[header_size:], buffers))
            del buffers
        except BaseException as exc:
            self._send_error(task_id, before, exc, skip_frames=0)
            return
        started = time.perf_counter()
        try:
            result = fn(*args, **kwargs)
        except BaseException as exc:
            self._send_error(task_id, before, exc, skip_frames=1)
            return
        ran = time.perf_counter() - started
        del fn, args, kwargs
        try:
            payload, raws = shm.encode(result, self._config.shm_threshold)
            placed = [self._place(raw, attached) for raw in raws]
        except BaseException as exc:
            error = TypeError(f"the result of the function could not be pickled: {exc!r}")
            error.__cause__ = exc
            self._send_error(task_id, before, error, skip_frames=0)
            return
        del result, raws
        header = shm.pack_descriptors(placed)
        head = channel.ANSWER_HEAD.pack(task_id, _new_peak(before), ran, len(header))
        self._end.send(channel.RESULT, head, header, payload)

    @staticmethod
    def _attach(
        shared: shm.SharedBuffer, attached: list[tuple[int | None, int, str]]
    ) -> memoryview:
        mapping = shm.map_segment(shared.name, shared.nbytes, populate=False)
        attached.append((shm.address_of(mapping), shared.nbytes, shared.name))
        return memoryview(mapping)

    def _place(
        self, raw: memoryview, attached: list[tuple[int | None, int, str]]
    ) -> shm.SharedBuffer:
        address = shm.address_of(raw)
        for start, size, name in attached:
            if address is not None and address == start and raw.nbytes == size:
                return shm.SharedBuffer(name, size)  # the argument itself: the parent has it
        name = shm.new_segment_name(self._config.parent_pid)
        # Announce before creating: if we die in between, the parent still unlinks the name.
        self._end.send(channel.SEGMENT, name.encode())
        fd = shm.create_segment(name, raw.nbytes)
        try:
            shm.write_buffer(fd, raw)
        finally:
            os.close(fd)
        return shm.SharedBuffer(name, raw.nbytes)

    def _send_error(self, task_id: int, before: int, exc: BaseException, skip_frames: int) -> None:
        head = channel.ANSWER_HEAD.pack(task_id, _new_peak(before), 0.0, 0)
        self._end.send(channel.ERROR, head, error_report(exc, skip_frames))


def _new_peak(before: int) -> int:
    after = _max_rss_bytes()
    return after if after > before else 0


def error_report(exc: BaseException, skip_frames: int = 0) -> bytes:
    """Pickle (type name, message, formatted traceback, the exception if it round-trips)."""
    import traceback

    tb = exc.__traceback__
    for _ in range(skip_frames):
        if tb is not None and tb.tb_next is not None:
            tb = tb.tb_next
    text = "".join(traceback.format_exception(type(exc), exc, tb))
    kind = type(exc)
    type_name = f"{kind.__module__}.{kind.__qualname__}"
    try:
        message = str(exc)
    except Exception:
        message = "<str() of the exception failed>"
    rebuilt: bytes | None = None
    if isinstance(exc, Exception):
        try:
            data = pickle.dumps(exc, protocol=pickle.HIGHEST_PROTOCOL)
            pickle.loads(data)  # the parent must be able to rebuild it, so check here
            rebuilt = data
        except Exception:
            rebuilt = None
    return pickle.dumps((type_name, message, text, rebuilt), protocol=pickle.HIGHEST_PROTOCOL)
