"""Process bookkeeping: start children, watch them exit, recycle them, kill them.

Each child is a ``multiprocessing`` spawn-context process (never fork: the parent runs an event
loop and threads) connected by a Unix socket pair. Its exit is watched on the event loop through a
pidfd (Linux >= 5.3; readable exactly when the child has exited) or, elsewhere, its
multiprocessing sentinel. Nothing here decides *why* a child should go; the pool does, and this
module does it: ``retire`` (close the socket, the child exits by itself), ``terminate`` (SIGTERM,
then SIGKILL after a grace period) or ``kill`` (SIGKILL now).

Children are spawned from the event-loop thread only: PR_SET_PDEATHSIG in the child fires when
the spawning *thread* exits, so spawning from a short-lived helper thread would kill them early.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import logging
import multiprocessing
import os
import signal
import socket
import struct
import time
from collections import deque
from multiprocessing.process import BaseProcess
from typing import TYPE_CHECKING, Protocol

from . import channel
from .child import ChildConfig, child_main

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from .records import TaskRecord

_READY = struct.Struct("!Qd")
_TASK_ID = struct.Struct("!Q")
_EXIT_POLL = 0.002
_EXIT_POLLS = 500


class WorkerState(enum.Enum):
    STARTING = "starting"  # spawned, preload running, not ready yet
    IDLE = "idle"
    BUSY = "busy"
    RETIRING = "retiring"  # told to exit (or being killed); still alive
    DEAD = "dead"


class WorkerEvents(Protocol):
    """What the pool hears from its children."""

    def worker_ready(self, worker: Worker) -> None: ...

    def worker_frame(self, worker: Worker, frame: bytes) -> None: ...

    def worker_exited(self, worker: Worker) -> None: ...


class Worker:
    """One child process and what the parent knows about it."""

    def __init__(self, wid: int, process: BaseProcess, pid: int) -> None:
        self.wid = wid
        self.process = process
        self.pid = pid
        self.state = WorkerState.STARTING
        self.spawned_at = time.monotonic()
        self.ready_after: float | None = None
        self.startup_seconds: float | None = None
        self.idle_since = self.spawned_at
        self.tasks_done = 0
        # Tasks sent to this child, oldest first: the head is running, the rest (short tasks
        # sent ahead, see the pool's prefetch) wait in the child and have not started.
        self.inflight: deque[TaskRecord] = deque()
        self.recycle_after_task = False
        self.last_peak = 0  # peak RSS reported with the child's last answer (0 = no new peak)
        self.init_error: str | None = None
        self.exitcode: int | None = None
        self.channel: channel.Channel | None = None
        self.exited = asyncio.Event()
        self.pidfd: int | None = None
        self.watched_fd: int | None = None
        self.kill_timer: asyncio.TimerHandle | None = None

    @property
    def alive(self) -> bool:
        return self.state is not WorkerState.DEAD

    @property
    def task(self) -> TaskRecord | None:
        """The task running in this child (the oldest one sent), if any."""
        return self.inflight[0] if self.inflight else None

    def __repr__(self) -> str:
        return f"<Worker {self.wid} pid={self.pid} {self.state.value}>"


class WorkerManager:
    """Owns every child process of one pool."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        events: WorkerEvents,
        config: ChildConfig,
        *,
        max_workers: int,
        terminate_grace: float,
    ) -> None:
        self._loop = loop
        self._events = events
        self._config = config
        self._context = multiprocessing.get_context("spawn")
        self.max_workers = max_workers
        self._grace = terminate_grace
        self._next_id = 0
        self.workers: dict[int, Worker] = {}

    def live(self) -> list[Worker]:
        return [worker for worker in self.workers.values() if worker.alive]

    def count(self, state: WorkerState) -> int:
        return sum(1 for worker in self.workers.values() if worker.state is state)

    def idle_worker(self) -> Worker | None:
        """The idle child used most recently (its caches are the warmest)."""
        best: Worker | None = None
        for worker in self.workers.values():
            if worker.state is WorkerState.IDLE and (
                best is None or worker.idle_since > best.idle_since
            ):
                best = worker
        return best

    def can_spawn(self) -> bool:
        return len(self.live()) < self.max_workers

    def spawn(self) -> Worker:
        """Start one child (non-blocking apart from fork/exec); it reports READY when warm."""
        parent_end, child_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        wid = self._next_id
        self._next_id += 1
        process = self._context.Process(
            target=child_main,
            args=(child_end, self._config),
            name=f"gaia-process-pool-{wid}",
            daemon=False,
        )
        try:
            process.start()
        finally:
            child_end.close()
        assert process.pid is not None
        worker = Worker(wid, process, process.pid)
        self.workers[wid] = worker
        worker.channel = channel.Channel(
            parent_end,
            self._loop,
            on_frame=lambda frame: self._on_frame(worker, frame),
            on_closed=lambda: None,  # the exit watch below is the authority on death
        )
        worker.channel.open()
        self._watch_exit(worker)
        return worker

    def send_task(self, worker: Worker, record: TaskRecord) -> None:
        """Send a task to an idle child, or behind the running one of a busy child."""
        assert worker.channel is not None
        assert worker.state in (WorkerState.IDLE, WorkerState.BUSY)
        worker.state = WorkerState.BUSY
        worker.inflight.append(record)
        head = channel.RUN_HEAD.pack(record.task_id, len(record.buffers))
        worker.channel.send(channel.RUN, head, record.buffers, record.call)

    def cancel_queued(self, worker: Worker, record: TaskRecord) -> None:
        """Ask the child to drop a task it has not started (it answers SKIPPED if in time)."""
        if worker.channel is not None and worker.channel.is_open:
            worker.channel.send(channel.CANCEL, _TASK_ID.pack(record.task_id))

    def task_done(self, worker: Worker, record: TaskRecord, *, ran: bool = True) -> None:
        """A task left the child: it ran, or (``ran=False``) it was skipped before starting."""
        inflight = worker.inflight
        if inflight and inflight[0] is record:
            inflight.popleft()
        elif record in inflight:
            inflight.remove(record)
        if ran:
            worker.tasks_done += 1
        if worker.state is WorkerState.BUSY and not worker.inflight:
            worker.state = WorkerState.IDLE
            worker.idle_since = time.monotonic()

    def retire(self, worker: Worker) -> None:
        """Ask a child to exit (end-of-file on its socket); SIGKILL if it lingers."""
        if not worker.alive or worker.state is WorkerState.RETIRING:
            return
        worker.state = WorkerState.RETIRING
        if worker.channel is not None:
            worker.channel.close()
        self._arm_kill(worker)

    def terminate(self, worker: Worker) -> None:
        """SIGTERM now, SIGKILL after the grace period if the child is still there."""
        if not worker.alive:
            return
        worker.state = WorkerState.RETIRING
        self._signal(worker, signal.SIGTERM)
        self._arm_kill(worker)

    def kill(self, worker: Worker) -> None:
        if not worker.alive:
            return
        worker.state = WorkerState.RETIRING
        self._signal(worker, signal.SIGKILL)

    def kill_all_now(self) -> None:
        """Last resort at interpreter exit: SIGKILL every child and reap it, synchronously."""
        for worker in list(self.workers.values()):
            if worker.alive:
                self._signal(worker, signal.SIGKILL)
                worker.process.join(timeout=5)

    async def wait_all_exited(self) -> None:
        waits = [worker.exited.wait() for worker in self.workers.values() if worker.alive]
        if waits:
            await asyncio.gather(*waits)

    def _arm_kill(self, worker: Worker) -> None:
        if worker.kill_timer is None:
            worker.kill_timer = self._loop.call_later(self._grace, self.kill, worker)

    def _signal(self, worker: Worker, signum: int) -> None:
        try:
            if worker.pidfd is not None:
                signal.pidfd_send_signal(worker.pidfd, signum)
            elif worker.process.exitcode is None:
                os.kill(worker.pid, signum)
        except ProcessLookupError:
            pass

    def _on_frame(self, worker: Worker, frame: bytes) -> None:
        try:
            self._handle_frame(worker, frame)
        except Exception:
            # A frame we cannot handle leaves the conversation out of step: the child is killed
            # so that its task fails (WorkerCrashed) instead of waiting forever.
            logger.exception("process pool: cannot handle a frame from %s; killing it", worker)
            self.kill(worker)

    def _handle_frame(self, worker: Worker, frame: bytes) -> None:
        kind = frame[:1]
        if kind == channel.READY:
            _pid, seconds = _READY.unpack_from(frame, 1)
            if worker.state is WorkerState.STARTING:
                worker.state = WorkerState.IDLE
                worker.startup_seconds = seconds
                worker.ready_after = time.monotonic() - worker.spawned_at
                worker.idle_since = time.monotonic()
                self._events.worker_ready(worker)
        elif kind == channel.INIT_FAILED:
            worker.init_error = frame[1:].decode(errors="replace")
        else:
            self._events.worker_frame(worker, frame)

    def _watch_exit(self, worker: Worker) -> None:
        fd: int | None = None
        if hasattr(os, "pidfd_open"):
            try:
                fd = os.pidfd_open(worker.pid)
                worker.pidfd = fd
            except OSError:
                fd = None
        if fd is None:
            fd = worker.process.sentinel
        worker.watched_fd = fd
        self._loop.add_reader(fd, self._on_exit, worker, _EXIT_POLLS)

    def _on_exit(self, worker: Worker, polls_left: int) -> None:
        if worker.watched_fd is not None:
            self._loop.remove_reader(worker.watched_fd)
        exitcode = worker.process.exitcode
        if exitcode is None and polls_left > 0:
            # The sentinel closes a moment before the child can be reaped; poll briefly.
            self._loop.call_later(_EXIT_POLL, self._on_exit, worker, polls_left - 1)
            return
        self._close_handles(worker)
        if worker.channel is not None:
            worker.channel.drain()  # frames the child sent before dying (segments, a result)
            worker.channel.close()
        worker.exitcode = exitcode
        worker.state = WorkerState.DEAD
        if worker.kill_timer is not None:
            worker.kill_timer.cancel()
            worker.kill_timer = None
        worker.exited.set()
        self._events.worker_exited(worker)
        del self.workers[worker.wid]
        _close_process(worker.process)

    def _close_handles(self, worker: Worker) -> None:
        if worker.pidfd is not None:
            os.close(worker.pidfd)
            worker.pidfd = None
        worker.watched_fd = None


def _close_process(process: BaseProcess) -> None:
    with contextlib.suppress(ValueError):
        process.close()

