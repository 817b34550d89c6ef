"""Typed failures of the process pool.

Every way a call to :meth:`ProcessPool.run` can fail without the function itself raising is one
of the classes below, all subclasses of :class:`ProcessPoolError`. Each class says, through its
``retryable`` attribute, whether running the same call again may succeed; the WorkerPool maps a
retryable failure to a queue retry (an attempt, with backoff) and anything else to a permanent
failure. The pool itself never retries: that decision belongs to the caller.

An exception raised *inside* the function is re-raised in the parent as its original type when
it can be rebuilt safely, with a :class:`RemoteError` (carrying the child's formatted traceback)
as its ``__cause__``; when it cannot be rebuilt, the :class:`RemoteError` itself is raised.
"""

from __future__ import annotations

import signal


class ProcessPoolError(Exception):
    """Base class of every failure reported by the process pool.

    Subclasses keep their details as attributes; pickling restores them without calling
    ``__init__`` again, so every error survives a trip between processes (a pool used inside a
    child of another pool).
    """

    retryable: bool = False

    def __reduce__(self) -> tuple[object, ...]:
        return (_restore_error, (type(self), self.args, dict(self.__dict__)))


def _restore_error(
    cls: type[ProcessPoolError], args: tuple[object, ...], state: dict[str, object]
) -> ProcessPoolError:
    error = cls.__new__(cls)
    Exception.__init__(error, *args)
    error.__dict__.update(state)
    return error


class PoolClosed(ProcessPoolError):
    """The pool was stopped before the task could finish (or the pool was already stopped).

    Retryable: the task itself did nothing wrong; another pool (or a later worker) can run it.
    """

    retryable = True


class TaskTooLarge(ProcessPoolError, ValueError):
    """The declared memory estimate exceeds the pool's budget or per-child hard limit: the task
    could never be admitted here. Not retryable (the same estimate fails the same way)."""

    retryable = False


class TaskNotSendable(ProcessPoolError, TypeError):
    """The function or an argument cannot be pickled for a child process (a lambda, a local
    function, an open file...). Not retryable."""

    retryable = False


class WorkerStartError(ProcessPoolError):
    """A child process could not be started or its initializer failed.

    Not retryable: the same configuration will fail the same way.
    """

    retryable = False


def describe_exit(pid: int, exitcode: int | None) -> str:
    """Say in words how a child ended: ``child 1234 killed by SIGKILL (signal 9)``."""
    if exitcode is None:
        return f"child {pid} ended with an unknown status"
    if exitcode < 0:
        number = -exitcode
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "an unknown signal"
        return f"child {pid} killed by {name} (signal {number})"
    return f"child {pid} exited with code {exitcode}"


class WorkerCrashed(ProcessPoolError):
    """The child running the task died before sending a result.

    ``likely_oom`` is set when the death looks like memory exhaustion: killed by SIGKILL while
    the kernel's OOM-kill counter moved, or killed by the pool for exceeding its hard limit
    (:class:`MemoryLimitExceeded`). Retryable: a process death is not the function's verdict on
    its input; the queue's attempt limit bounds the retries.
    """

    retryable = True

    def __init__(
        self,
        pid: int,
        exitcode: int | None,
        *,
        function: str = "",
        likely_oom: bool = False,
        detail: str = "",
    ) -> None:
        self.pid = pid
        self.exitcode = exitcode
        self.function = function
        self.likely_oom = likely_oom
        self.signal_number = -exitcode if exitcode is not None and exitcode < 0 else None
        parts = [describe_exit(pid, exitcode)]
        if function:
            parts.append(f"while running {function}")
        if likely_oom:
            parts.append("(likely out of memory)")
        if detail:
            parts.append(f"- {detail}")
        super().__init__(" ".join(parts))



class MemoryLimitExceeded(WorkerCrashed):
    """The pool killed the child because its RSS went over the per-child hard limit.

    Retryable (the queue retries with backoff, later attempts may run on a quieter machine or be
    admitted with a learned, larger estimate). The message names the estimate, the observed peak
    and the limit.
    """

    retryable = True

    def __init__(
        self, pid: int, *, function: str, peak_bytes: int, limit_bytes: int, estimate_bytes: int
    ) -> None:
        self.peak_bytes = peak_bytes
        self.limit_bytes = limit_bytes
        self.estimate_bytes = estimate_bytes
        detail = (
            f"peak RSS {_mib(peak_bytes)} over the hard limit of {_mib(limit_bytes)} "
            f"(estimate {_mib(estimate_bytes)}); killed with SIGKILL"
        )
        super().__init__(
            pid, -signal.SIGKILL, function=function, likely_oom=True, detail=detail
        )


class TaskTimeout(ProcessPoolError):
    """The task ran longer than its ``timeout``; its child was terminated.

    Retryable: a timeout is an attempt that failed (production lesson: expiry counts as an
    attempt), the queue decides whether attempts remain.
    """

    retryable = True

    def __init__(self, function: str, timeout: float, pid: int) -> None:
        self.function = function
        self.timeout = timeout
        self.pid = pid
        super().__init__(
            f"{function} ran longer than its timeout of {timeout:g} s in child {pid}; "
            "the child was terminated"
        )


class RemoteError(ProcessPoolError):
    """An exception raised by the function inside the child.

    Raised directly when the original exception cannot be rebuilt in the parent (its class is not
    importable, it does not pickle, or it is not an ``Exception``, e.g. ``SystemExit``); otherwise
    attached as ``__cause__`` of the rebuilt original so its traceback shows the child's frames.
    Retryable, like any exception a handler raises: the worker pool counts it as a failed
    attempt (the function can raise a non-retryable error type to say otherwise).
    """

    retryable = True

    def __init__(self, type_name: str, message: str, remote_traceback: str) -> None:
        self.type_name = type_name
        self.message = message
        self.remote_traceback = remote_traceback
        super().__init__(f"{type_name}: {message}\n\nRemote traceback:\n{remote_traceback}")



def _mib(value: int) -> str:
    return f"{value / 2**20:.0f} MiB"
