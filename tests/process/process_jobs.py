"""Functions the process-pool tests run in child processes.

They live in their own module, importable by name in a spawned child, that imports nothing but
the standard library (numpy only inside the functions that need it), so a child starts quickly
and the tests can check what a child has imported.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from pathlib import Path

INIT_MARKER_ENV = "PROCESS_JOBS_INIT_DIR"


def add(a: int, b: int = 0) -> int:
    return a + b


def describe_call(*args: object, **kwargs: object) -> dict[str, object]:
    return {"args": list(args), "kwargs": kwargs}


def child_pid() -> int:
    return os.getpid()


def sleep_then(seconds: float, value: object = None) -> object:
    time.sleep(seconds)
    return value


def timed_sleep(seconds: float) -> tuple[int, float, float]:
    """Sleep and say which child did it, from when to when (CLOCK_MONOTONIC is system-wide)."""
    started = time.monotonic()
    time.sleep(seconds)
    return os.getpid(), started, time.monotonic()


def fail_with_value_error(message: str) -> None:
    raise ValueError(message)


class NeedsTwoArguments(Exception):
    """An exception that cannot be rebuilt by unpickling (its __init__ takes two arguments)."""

    def __init__(self, code: int, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code


def fail_with_unrebuildable_error() -> None:
    raise NeedsTwoArguments(7, "cannot be unpickled")


def exit_now(code: int) -> None:
    os._exit(code)


def kill_self(signum: int) -> None:
    os.kill(os.getpid(), signum)
    time.sleep(10)


def segfault() -> None:
    ctypes.string_at(0)


def ignore_sigterm_then_sleep(seconds: float) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    time.sleep(seconds)


def allocate_and_hold(megabytes: int, seconds: float) -> int:
    """Touch ``megabytes`` of fresh memory and keep it for ``seconds``."""
    block = bytearray(megabytes * 2**20)
    for offset in range(0, len(block), 4096):
        block[offset] = 1
    time.sleep(seconds)
    return len(block)


def imported(module: str) -> bool:
    return module in sys.modules


def record_init(directory: str) -> None:
    """Initializer: leave a file named after this child's pid."""
    Path(directory, str(os.getpid())).write_text("initialised")


def init_files(directory: str) -> list[str]:
    return sorted(path.name for path in Path(directory).iterdir())


def fail_in_init() -> None:
    raise RuntimeError("initializer refused to start")


def identity(value: object) -> object:
    return value


def scaled(array: object, factor: float) -> object:
    return array * factor  # type: ignore[operator]


def array_stats(array: object) -> tuple[float, tuple[int, ...], str, bool]:
    import numpy as np

    values = np.asarray(array)
    return float(values.sum()), values.shape, values.dtype.str, bool(values.flags.f_contiguous)


def new_array(count: int) -> object:
    import numpy as np

    return np.arange(count, dtype=np.float64)


def arrays_in_structure(count: int) -> dict[str, object]:
    import numpy as np

    return {"a": np.ones(count), "nested": [np.zeros(count, dtype=np.int32), "text"], "n": 3}


class DieWhilePickled:
    """Kills its own process when pickled: simulates a child dying mid-result."""

    def __reduce__(self) -> tuple[object, ...]:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
        return (DieWhilePickled, ())


def array_then_die(count: int) -> tuple[object, DieWhilePickled]:
    """A result whose array reaches shared memory before the child dies pickling the rest."""
    import numpy as np

    return np.ones(count), DieWhilePickled()


def hold_array_then_die(array: object) -> None:
    """Receive an array through shared memory, then die (the parent must release it)."""
    os.kill(os.getpid(), signal.SIGKILL)
    time.sleep(10)


def pid_and_square(value: int) -> tuple[int, int]:
    return os.getpid(), value * value


def log_and_sleep(log: str, tag: str, seconds: float = 0.0) -> str:
    """Append ``tag`` to the file ``log`` (one line per run), then sleep."""
    with open(log, "a") as handle:
        handle.write(tag + "\n")
    time.sleep(seconds)
    return tag


def unpicklable_result() -> object:
    return (value for value in range(3))  # a generator cannot be pickled
