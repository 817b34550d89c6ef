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
import traceback
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, cast

from . import channel, shm

if TYPE_CHECKING:
    import numpy as np

_RESULT_HEAD = struct.Struct("!QQ")  # task id, peak RSS in bytes (0 = no new peak seen)
_READY = struct.Struct("!Qd")  # pid, seconds spent starting (preload + initializer)
_WATCH_INTERVAL = 0.5
EXIT_PARENT_GONE = 75
_PR_SET_PDEATHSIG = 1
_Call = tuple[Callable[..., object], tuple[object, ...], dict[str, object]]


@dataclass(frozen=True)
class ChildConfig:
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


def _max_rss_bytes() -> int:
    try:
        import resource
    except ImportError:
        return 0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(peak if sys.platform == "darwin" else peak * 1024)


class _Runner:
    """Runs one RUN frame at a time and sends back its result or error."""

    def __init__(self, end: channel.ChildEnd, config: ChildConfig) -> None:
        self._end = end
        self._config = config
        # Arrays mapped from this task's arguments: id -> (array, descriptor). Kept alive for the
        # task so an argument returned as-is goes back as a reference to the parent's segment.
        self._attached: dict[int, tuple[np.ndarray, shm.SharedArray]] = {}

    def run(self, frame: bytes) -> None:
        (task_id,) = struct.unpack_from("!Q", frame, 1)
        before = _max_rss_bytes()
        try:
            try:
                call = cast(_Call, shm.decode(frame, 9, self._attach))
                fn, args, kwargs = call
            except BaseException as exc:
                self._send_error(task_id, before, exc, skip_frames=0)
                return
            try:
                result = fn(*args, **kwargs)
            except BaseException as exc:
                self._send_error(task_id, before, exc, skip_frames=1)
                return
            del fn, args, kwargs, call
            try:
                payload = shm.encode(
                    result, threshold=self._config.shm_threshold, place=self._place
                )
            except BaseException as exc:
                error = TypeError(f"the result of the function could not be pickled: {exc!r}")
                error.__cause__ = exc
                self._send_error(task_id, before, error, skip_frames=0)
                return
            del result
            head = _RESULT_HEAD.pack(task_id, _new_peak(before))
            self._end.send(channel.RESULT, head, payload)
        finally:
            self._attached.clear()

    def _attach(self, descriptor: shm.SharedArray) -> object:
        mapping = shm.map_segment(descriptor.name, descriptor.nbytes, populate=False)
        array = shm.array_view(mapping, descriptor)
        self._attached[id(array)] = (array, descriptor)
        return array

    def _place(self, array: np.ndarray) -> shm.SharedArray:
        known = self._attached.get(id(array))
        if known is not None and known[0] is array:
            return known[1]  # the argument itself: the parent already has it
        name = shm.new_segment_name(self._config.parent_pid)
        descriptor = shm.describe(array, name)
        # Announce before creating: if we die in between, the parent still unlinks the name.
        self._end.send(channel.SEGMENT, name.encode())
        fd = shm.create_segment(name, descriptor.nbytes)
        try:
            shm.write_array(fd, array, descriptor)
        finally:
            os.close(fd)
        return descriptor

    def _send_error(self, task_id: int, before: int, exc: BaseException, skip_frames: int) -> None:
        head = _RESULT_HEAD.pack(task_id, _new_peak(before))
        self._end.send(channel.ERROR, head, error_report(exc, skip_frames))


def _new_peak(before: int) -> int:
    after = _max_rss_bytes()
    return after if after > before else 0


def error_report(exc: BaseException, skip_frames: int = 0) -> bytes:
    """Pickle (type name, message, formatted traceback, the exception if it round-trips)."""
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
