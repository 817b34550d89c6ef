"""The asyncio WorkerPool: N job slots over one queue, with a small loop and composable policies.

Loop: take a free slot, claim a job (the claim blocks on the backend's wake-up, so an idle pool
costs ~0 CPU), run it under the middleware chain with its lease kept alive, write the outcome.
A reaper reclaims expired leases of every type. ``stop()`` stops claiming, lets running jobs
finish until the drain deadline, then cancels them and releases their claims so another worker
takes them at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
import uuid
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gaia.validator.core.errors import QueueClosed, UnknownTask
from gaia.validator.core.job import JobError
from gaia.validator.core.outcomes import Fail, Outcome, Success, TaskResult
from gaia.validator.core.queue import Lease, Queue
from gaia.validator.core.task import TaskRegistry
from gaia.validator.workers.context import JobContext
from gaia.validator.workers.execute import Executor, ProcessRunner
from gaia.validator.workers.heartbeats import Heartbeats
from gaia.validator.workers.middleware import Middleware, compose, default_middleware
from gaia.validator.workers.settle import complete_and_claim, release, settle
from gaia.validator.workers.type_limits import TypeLimits

log = logging.getLogger("gaia.worker")


@dataclass(frozen=True)
class PoolConfig:
    concurrency: int = 10
    lease_seconds: float = 30.0
    drain_seconds: float = 30.0
    idle_wait: float = 1.0
    """Longest single blocking claim; bounds how long ``stop()`` waits for an idle claimer."""
    reap_interval: float = 10.0
    type_limits: Mapping[str, int] = field(default_factory=dict)
    """Most jobs of a type running at once in this pool (types not named: bounded by slots)."""

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {self.concurrency}")
        if self.lease_seconds <= 0 or self.drain_seconds < 0 or self.idle_wait <= 0:
            raise ValueError("lease_seconds and idle_wait must be > 0, drain_seconds >= 0")


class WorkerPool:
    def __init__(
        self,
        queue: Queue,
        registry: TaskRegistry,
        config: PoolConfig | None = None,
        *,
        middleware: Sequence[Middleware] | None = None,
        process_runner: ProcessRunner | None = None,
        subscribe: Collection[str] | Literal["all"] | None = None,
    ) -> None:
        """``subscribe``: job types to claim; None = the registered ones; "all" = every type,
        dead-lettering those with no registered task."""
        self.config = config or PoolConfig()
        self.worker_id = f"worker-{uuid.uuid4().hex[:12]}"
        self._queue = queue
        self._registry = registry
        self._middleware = list(default_middleware() if middleware is None else middleware)
        self._chain = compose(self._middleware, Executor(process_runner))
        self._types: list[str] | None = (
            None
            if subscribe == "all"
            else sorted(registry.names() if subscribe is None else subscribe)
        )
        self._limits = TypeLimits(self.config.type_limits, self._types)
        self._free = self.config.concurrency
        """Job slots not running or reserved by a claim in flight."""
        self._slot_freed = asyncio.Event()
        self._stopping = asyncio.Event()
        self._stopped = asyncio.Event()
        self._claimer: asyncio.Task[None] | None = None
        self._claiming = False
        """True while a claim call is in flight: it must finish, or a claimed job would strand."""
        self._reaper: asyncio.Task[None] | None = None
        self._running: dict[str, asyncio.Task[None]] = {}
        self._recording: dict[asyncio.Task[None], float] = {}
        """Slots writing to the queue (an outcome, a hand-back), with the monotonic time after
        which the write is given up; a stop waits for them instead of cancelling them."""
        self._heartbeats = Heartbeats(queue, self.config.lease_seconds)
        self._background: set[asyncio.Future[None]] = set()
        """Releases of claims no slot will run (kept referenced until they finish)."""

    @property
    def running_jobs(self) -> int:
        return len(self._running)

    async def start(self) -> None:
        if self._claimer is not None:
            raise RuntimeError("worker pool already started")
        for layer in self._middleware:
            await layer.start()
        self._heartbeats.start()
        self._claimer = asyncio.create_task(self._claim_loop(), name=f"{self.worker_id}-claim")
        self._reaper = asyncio.create_task(self._reap_loop(), name=f"{self.worker_id}-reap")
        log.info("worker pool started", extra={"worker_id": self.worker_id})

    async def stop(self, drain_seconds: float | None = None) -> None:
        """Stop claiming, drain running jobs to the deadline, then cancel and release the rest."""
        if self._stopping.is_set():
            await self._stopped.wait()
            return
        self._stopping.set()
        try:
            await self._drain(self.config.drain_seconds if drain_seconds is None else drain_seconds)
        finally:  # even when the drain failed or this stop was cancelled
            await self._heartbeats.stop()
            for layer in self._middleware:
                try:
                    await layer.stop()
                except Exception:
                    log.exception("middleware %s failed in stop()", type(layer).__name__)
            self._stopped.set()
            log.info("worker pool stopped", extra={"worker_id": self.worker_id})

    async def _drain(self, drain: float) -> None:
        deadline = time.monotonic() + drain
        if self._claimer is not None and not self._claiming:
            self._claimer.cancel()  # parked on a free slot: safe to interrupt
        for background in (self._claimer, self._reaper):
            if background is not None:
                await asyncio.wait([background])  # a cancel of stop() itself still reaches it
                if not background.cancelled() and background.exception() is not None:
                    log.error(
                        "%s ended with an error",
                        background.get_name(),
                        exc_info=background.exception(),
                    )
        if self._running:
            await asyncio.wait(
                list(self._running.values()), timeout=max(0.0, deadline - time.monotonic())
            )
        # A slot writing its outcome is not cancelled: the outcome would be lost (it was about
        # to be recorded, and the job would run again). A write is given up after a lease.
        leftover = [runner for runner in self._running.values() if runner not in self._recording]
        for runner in leftover:
            runner.cancel()
        if leftover:
            log.warning("drain deadline reached: cancelled %d running jobs", len(leftover))
        give_up = time.monotonic() + self.config.lease_seconds
        while self._running and time.monotonic() < give_up:
            self._give_up_overdue_writes()
            next_check = min([give_up, *self._recording.values()])
            await asyncio.wait(
                list(self._running.values()),
                timeout=max(0.01, next_check - time.monotonic()),
                return_when=asyncio.FIRST_COMPLETED,
            )
        if self._running:  # a handler that ignores cancellation: do not wait for it forever
            log.error("%d slots did not end a lease after the drain deadline", len(self._running))
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT start a graceful stop."""
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, self._on_signal, signum)

    def _on_signal(self, signum: int) -> None:
        log.info("received %s: draining", signal.Signals(signum).name)
        if not self._stopping.is_set():
            asyncio.get_running_loop().create_task(self.stop())

    async def run(self) -> None:
        """Start, serve until SIGTERM/SIGINT, drain, return. The signal handlers are removed
        on return, so a second signal can interrupt whatever the caller closes next."""
        self.install_signal_handlers()
        try:
            await self.start()
            await self.wait_stopped()
        finally:
            loop = asyncio.get_running_loop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    async def __aenter__(self) -> WorkerPool:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- the loop --------------------------------------------------------------------------
    async def _claim_loop(self) -> None:
        """Claim as many jobs as there are free slots, in one call, then start each."""
        backoff = 0.1
        while not self._stopping.is_set():
            types = self._limits.claimable(self._types)
            while self._free == 0 or (self._limits and not types):
                self._slot_freed.clear()
                await self._slot_freed.wait()
                types = self._limits.claimable(self._types)
            count = self._limits.allowance(types, self._free)
            self._free -= count
            self._claiming = True
            try:
                leases = await self._queue.claim_many(
                    self.worker_id,
                    count,
                    types=types,
                    lease_seconds=self.config.lease_seconds,
                    wait=self.config.idle_wait,
                )
            except QueueClosed:
                self._free += count
                return
            except Exception:
                self._free += count
                log.warning("claim failed; retrying in %.1f s", backoff, exc_info=True)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            finally:
                self._claiming = False
            backoff = 0.1
            self._free += count - len(leases)
            for lease in leases:
                if self._stopping.is_set():
                    await release(self._queue, lease)
                    self._free += 1
                else:
                    self._limits.began(lease.job.type)
                    runner = asyncio.create_task(self._run(lease), name=f"job-{lease.job_id}")
                    self._running[lease.job_id] = runner

    async def _reap_loop(self) -> None:
        """Reap at start (a restarted worker first recovers what its predecessor held), then
        every ``reap_interval``; each round also gives up writes unanswered for a lease."""
        while not self._stopping.is_set():
            self._give_up_overdue_writes()
            try:
                reclaimed = await self._queue.reap()
            except QueueClosed:
                return
            except Exception:
                log.warning(
                    "reap failed; trying again in %.1f s", self.config.reap_interval, exc_info=True
                )
                reclaimed = 0
            if reclaimed:
                log.warning("reclaimed %d jobs with expired leases", reclaimed)
                for layer in self._middleware:
                    try:
                        layer.reaped(reclaimed)
                    except Exception:
                        log.exception("middleware %s failed in reaped()", type(layer).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.reap_interval)

    async def _run(self, lease: Lease) -> None:
        """Run the slot's job, then each next job its completion claimed (see ``_finish``)."""
        current: Lease | None = lease
        runner = asyncio.current_task()
        assert runner is not None
        try:
            while current is not None:
                following = await self._run_attempt(current)
                self._forget(current.job_id, runner)
                self._ended(current)
                current = following
                if current is None:
                    break
                self._limits.began(current.job.type)
                self._running[current.job_id] = runner  # a stop waits for this slot from now on
                if self._stopping.is_set():
                    with self._writing(runner):  # handing the claim back is a write too
                        await release(self._queue, current)
                    break
        except Exception:
            log.exception(
                "slot failed outside the handler of job %s; if its outcome was not recorded, "
                "the job is reclaimed when its lease expires",
                (current or lease).job_id,
            )
        finally:
            if current is not None:
                self._forget(current.job_id, runner)
                self._ended(current)
            self._free += 1
            self._slot_freed.set()

    def _ended(self, lease: Lease) -> None:
        if self._limits.ended(lease.job.type):
            self._slot_freed.set()  # a type at its limit may be claimable again

    @contextlib.contextmanager
    def _writing(self, runner: asyncio.Task[None]) -> Iterator[None]:
        """Mark ``runner`` as writing to the queue: a stop waits for it, up to a lease."""
        self._recording[runner] = time.monotonic() + self.config.lease_seconds
        try:
            yield
        finally:
            self._recording.pop(runner, None)

    def _give_up_overdue_writes(self) -> None:
        """Cancel the slots whose write has gone unanswered for a whole lease: the job is
        reclaimed by then, so the write is moot, and the slot is needed."""
        now = time.monotonic()
        for runner, give_up in list(self._recording.items()):
            if give_up <= now:
                del self._recording[runner]
                log.error(
                    "a write to the queue went unanswered for %.0f s; giving it up (the job is "
                    "reclaimed when its lease expires)",
                    self.config.lease_seconds,
                )
                runner.cancel()

    def _forget(self, job_id: str, runner: asyncio.Task[None]) -> None:
        """This slot no longer runs ``job_id`` (another slot may run it by now: keep that)."""
        if self._running.get(job_id) is runner:
            del self._running[job_id]

    async def _run_attempt(self, lease: Lease) -> Lease | None:
        """Run one claimed job in this task; cancelling the task (drain deadline, lost lease)
        stops the handler, and the claim is then released unless the lease was lost. Returns
        the slot's next job when recording the outcome claimed one."""
        job = lease.job
        started = time.time()
        try:
            task = self._registry.get(job.type)
        except UnknownTask as exc:
            return await self._finish(lease, Fail(JobError(str(exc), kind="unknown_type")), started)
        runner = asyncio.current_task()
        assert runner is not None
        cancel_event = asyncio.Event()
        held = self._heartbeats.hold(lease, runner, cancel_event)
        ctx = JobContext(
            job=job,
            task=task,
            deadline=started + job.timeout,
            worker_id=self.worker_id,
            beat=lambda progress: self._heartbeats.beat(held, progress),
            cancel_event=cancel_event,
        )
        try:
            outcome: Outcome | None = await self._chain(ctx)
        except asyncio.CancelledError:
            runner.uncancel()
            outcome = None
        finally:
            self._heartbeats.drop(held)
        if held.lost:
            return None
        if outcome is None:
            with self._writing(runner):
                await release(self._queue, held.lease)
            return None
        return await self._finish(held.lease, outcome, started)

    async def _finish(self, lease: Lease, outcome: Outcome, started: float) -> Lease | None:
        """Record the outcome. On a backend that completes and claims in one round trip, a
        success also claims this slot's next job (never while stopping), which is returned."""
        runner = asyncio.current_task()
        assert runner is not None
        # As self._writing(runner), inlined: this is the path of every job.
        self._recording[runner] = time.monotonic() + self.config.lease_seconds
        try:
            next_lease: Lease | None = None
            types = self._limits.claimable(self._types, finishing=lease.job.type)
            if (
                isinstance(outcome, Success)
                and self._queue.fuses_complete_and_claim
                and not self._stopping.is_set()
                and (types is None or types)
            ):
                recorded = await complete_and_claim(
                    self._queue, lease, outcome.value, types, self.config.lease_seconds
                )
                job = None if recorded is None else recorded[0]
                if recorded is not None and recorded[1]:
                    next_lease = recorded[1][0]
                    self._release_later(recorded[1][1:])  # asked for one: more would be a bug
            else:
                job = await settle(self._queue, lease, outcome)
        finally:
            self._recording.pop(runner, None)
        if job is not None:
            attempts = lease.job.attempts
            self._notify(TaskResult(job.id, job.type, attempts, outcome, started, time.time()))
        return next_lease

    def _release_later(self, leases: Sequence[Lease]) -> None:
        for lease in leases:
            releasing = asyncio.ensure_future(release(self._queue, lease))
            self._background.add(releasing)
            releasing.add_done_callback(self._background.discard)

    def _notify(self, result: TaskResult) -> None:
        for layer in self._middleware:
            try:
                layer.settled(result)
            except Exception:
                log.exception("middleware %s failed in settled()", type(layer).__name__)
