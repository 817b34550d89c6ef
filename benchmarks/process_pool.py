"""Process pools side by side: gaia's ProcessPool, concurrent.futures (spawn), loky and pebble.

Measured in one run, interleaved round by round so machine noise hits every pool alike:

* tiny-task throughput: 5,000 calls of a function that adds one, 2 workers (tasks/s, best round);
* a 256 MiB float64 array sent to a child and returned (``identity``), and sent to a child that
  returns a new array (``plus_zero``), against one memcpy of the same array into memory that is
  already faulted in (``np.copyto``, best of five). The median of five calls after a first one
  is reported; ``first_s`` is that first call, which for gaia includes creating the segment
  (fresh shared pages are zeroed and faulted in, slow on a VM) that later calls reuse;
* cold start: from constructing a pool to the result of a first task that imports numpy (each
  pool with its own default start policy: gaia prestarts one child, then the rest);
* warm start: the same task on a started pool whose children preloaded numpy.

``python -m benchmarks.process_pool`` prints the table; ``run()`` returns its rows.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
import statistics
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from typing import Protocol

Row = dict[str, str | float]

WORKERS = 2
TINY_TASKS = 5_000
ROUNDS = 5
ARRAY_BYTES = 256 * 2**20
ARRAY_CALLS = 5


def add_one(value: int) -> int:
    return value + 1


def identity(value: object) -> object:
    return value


def plus_zero(array: object) -> object:
    return array + 0  # type: ignore[operator]


def numpy_version() -> str:
    import numpy

    return str(numpy.__version__)


def preload_numpy() -> None:
    """Initializer of the warm pools: import numpy once per child."""
    importlib.import_module("numpy")


class Session(Protocol):
    name: str

    def call(self, fn: Callable[..., object], *args: object) -> object: ...

    def many(self, fn: Callable[..., object], args: Iterable[object]) -> list[object]: ...

    def close(self) -> None: ...


class GaiaSession:
    name = "gaia ProcessPool"

    def __init__(self, warm: bool) -> None:
        from gaia.validator.process import PoolSettings, ProcessPool

        self._runner = asyncio.Runner()
        self._pool = ProcessPool(
            PoolSettings(max_workers=WORKERS, preload=("numpy",) if warm else ())
        )
        self._runner.run(self._pool.start())

    def call(self, fn: Callable[..., object], *args: object) -> object:
        return self._runner.run(self._pool.run(fn, *args))

    def many(self, fn: Callable[..., object], args: Iterable[object]) -> list[object]:
        async def gather() -> list[object]:
            return list(await asyncio.gather(*(self._pool.run(fn, arg) for arg in args)))

        return self._runner.run(gather())

    def wait_ready(self) -> None:
        async def ready() -> None:
            while self._pool.snapshot().idle_workers < WORKERS:
                await asyncio.sleep(0.005)

        self._runner.run(ready())

    def close(self) -> None:
        self._runner.run(self._pool.stop())
        self._runner.close()


class ExecutorSession:
    """Any pool with a submit-like call returning a concurrent.futures.Future."""

    def __init__(
        self,
        name: str,
        executor: object,
        submit: Callable[..., Future[object]],
        close: Callable[[], None],
    ) -> None:
        self.name = name
        self._executor = executor
        self._submit = submit
        self._close = close

    def call(self, fn: Callable[..., object], *args: object) -> object:
        return self._submit(fn, *args).result()

    def many(self, fn: Callable[..., object], args: Iterable[object]) -> list[object]:
        futures = [self._submit(fn, arg) for arg in args]
        return [future.result() for future in futures]

    def close(self) -> None:
        self._close()


def open_futures(warm: bool) -> Session:
    from concurrent.futures import ProcessPoolExecutor

    executor = ProcessPoolExecutor(
        WORKERS,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=preload_numpy if warm else None,
    )
    return ExecutorSession(
        "concurrent.futures (spawn)", executor, executor.submit, lambda: executor.shutdown()
    )


def open_loky(warm: bool) -> Session:
    import loky

    executor = loky.ProcessPoolExecutor(WORKERS, initializer=preload_numpy if warm else None)
    return ExecutorSession("loky", executor, executor.submit, lambda: executor.shutdown())


def open_pebble(warm: bool) -> Session:
    import pebble

    pool = pebble.ProcessPool(
        max_workers=WORKERS,
        context=multiprocessing.get_context("spawn"),
        initializer=preload_numpy if warm else None,
    )

    def submit(fn: Callable[..., object], *args: object) -> Future[object]:
        future: Future[object] = pool.schedule(fn, args=args)
        return future

    def close() -> None:
        pool.close()  # type: ignore[no-untyped-call]
        pool.join()

    return ExecutorSession("pebble", pool, submit, close)


OPENERS: list[Callable[[bool], Session]] = [
    lambda warm: GaiaSession(warm),
    open_futures,
    open_loky,
    open_pebble,
]


def cpu_seconds() -> float:
    """CPU time used so far by this process (all threads) and every descendant still alive."""
    total = time.process_time()
    try:
        import psutil
    except ImportError:
        return total
    for child in psutil.Process().children(recursive=True):
        try:
            times = child.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def tiny_task_throughput() -> list[Row]:
    """Rate of each pool (best of the rounds) and the CPU it spent per task, parent and
    children together (median of the rounds): the second does not depend on how busy the
    machine is, the first does."""
    sessions = [open_session(False) for open_session in OPENERS]
    rates: dict[str, list[float]] = {session.name: [] for session in sessions}
    cpu: dict[str, list[float]] = {session.name: [] for session in sessions}
    try:
        for session in sessions:
            session.many(add_one, range(200))  # warm up (children started, paths learned)
        for _ in range(ROUNDS):
            for session in sessions:
                cpu_before = cpu_seconds()
                started = time.perf_counter()
                results = session.many(add_one, range(TINY_TASKS))
                rates[session.name].append(TINY_TASKS / (time.perf_counter() - started))
                cpu[session.name].append((cpu_seconds() - cpu_before) / TINY_TASKS)
                if results != [value + 1 for value in range(TINY_TASKS)]:
                    raise AssertionError(f"{session.name} returned wrong results")
    finally:
        for session in sessions:
            session.close()
    return [
        {
            "benchmark": f"tiny tasks, {WORKERS} workers",
            "pool": name,
            "value": max(rates[name]),
            "unit": "tasks/s (best)",
            "median_rate": statistics.median(rates[name]),
            "cpu_us_per_task": statistics.median(cpu[name]) * 1e6,
        }
        for name in rates
    ]


def memcpy_seconds(array: object) -> float:
    import numpy as np

    source = np.asarray(array)
    target = np.empty_like(source)
    target.fill(0)
    timings = []
    for _ in range(ARRAY_CALLS):
        started = time.perf_counter()
        np.copyto(target, source)
        timings.append(time.perf_counter() - started)
    return min(timings)


def array_round_trips() -> list[Row]:
    import numpy as np

    array = np.random.default_rng(0).standard_normal(ARRAY_BYTES // 8)
    rows: list[Row] = []
    for open_session in OPENERS:
        session = open_session(False)
        try:
            for fn in (identity, plus_zero):
                started = time.perf_counter()
                first = session.call(fn, array)
                first_seconds = time.perf_counter() - started
                if not np.array_equal(first, array):  # type: ignore[arg-type]
                    raise AssertionError(f"{session.name} changed the array")
                del first
                memcpy = memcpy_seconds(array)
                timings = []
                for _ in range(ARRAY_CALLS):
                    started = time.perf_counter()
                    result = session.call(fn, array)
                    timings.append(time.perf_counter() - started)
                    del result
                median = statistics.median(timings)
                rows.append({
                    "benchmark": f"256 MiB array round trip ({fn.__name__})",
                    "pool": session.name,
                    "value": median,
                    "unit": "s (median)",
                    "best_s": min(timings),
                    "first_s": first_seconds,
                    "memcpy_s": memcpy,
                    "x_memcpy": median / memcpy,
                })
        finally:
            session.close()
    return rows


def cold_start_seconds(open_session: Callable[[bool], Session]) -> tuple[str, float]:
    started = time.perf_counter()
    session = open_session(False)
    session.call(numpy_version)
    elapsed = time.perf_counter() - started
    session.close()
    return session.name, elapsed


def warm_start_seconds(open_session: Callable[[bool], Session]) -> tuple[str, float]:
    session = open_session(True)
    try:
        if isinstance(session, GaiaSession):
            session.wait_ready()
        session.many(add_one, range(4 * WORKERS))  # every child booted and warmed
        timings = []
        for _ in range(ARRAY_CALLS):
            started = time.perf_counter()
            session.call(numpy_version)
            timings.append(time.perf_counter() - started)
    finally:
        session.close()
    return session.name, statistics.median(timings)


def start_latency() -> list[Row]:
    """Cold: best of three new pools per contender, interleaved; warm: median of five."""
    cold: dict[str, list[float]] = {}
    for _ in range(ROUNDS - 2):
        for open_session in OPENERS:
            name, seconds = cold_start_seconds(open_session)
            cold.setdefault(name, []).append(seconds)
    rows: list[Row] = []
    for open_session in OPENERS:
        name, warm = warm_start_seconds(open_session)
        rows.append({"benchmark": "cold start: new pool to first numpy task", "pool": name,
                     "value": min(cold[name]), "unit": f"s (best of {len(cold[name])})",
                     "median_s": statistics.median(cold[name])})
        rows.append({"benchmark": "warm start: numpy task on a preloaded pool", "pool": name,
                     "value": warm, "unit": "s (median of 5)"})
    return rows


def run() -> list[Row]:
    return tiny_task_throughput() + array_round_trips() + start_latency()


def main() -> None:
    from gaia.cli.tables import print_table

    rows = run()
    columns = list(dict.fromkeys(key for row in rows for key in row))
    print_table("process pools", columns, [[row.get(c, "") for c in columns] for row in rows])


if __name__ == "__main__":
    main()
