"""Memory probing and the pool's memory thresholds.

Sources, in order: psutil when it is installed; otherwise the kernel's files (/proc/<pid>/statm,
/proc/meminfo, /proc/vmstat); cgroup limits are always read from their files (v2 memory.max /
memory.current, v1 memory.limit_in_bytes / memory.usage_in_bytes, see ``cgroups.py``). Where none
of these exists the pool still runs, with one logged warning: no budget beyond ``max_workers``,
no per-child limits, no admission floor.

Thresholds (the defaults; every one can be given explicitly in MiB in ``PoolSettings``):

=============  ======================  ===================================================
name           default                 effect
=============  ======================  ===================================================
available      (measured at start)     min(MemAvailable, cgroup limit - non-reclaimable use)
capacity       (measured at start)     min(MemTotal, cgroup limit)
budget         0.60 x available        running tasks' estimates must fit in it (admission)
soft limit     0.70 x budget           a child above it is recycled after its current task
hard limit     0.95 x budget           a child above it is killed: MemoryLimitExceeded
floor          0.10 x capacity         no task starts while system available memory is below
=============  ======================  ===================================================

Compared with Dask's worker thresholds, which are fractions of one worker's memory limit applied
to that worker process: Dask's *target* 0.6 (start spilling managed data) matches our budget 0.6,
except that we cannot spill and instead do not start the next task; *spill* 0.7 (spill by process
memory) matches our soft limit 0.7, where we recycle the child after its task instead of spilling;
*pause* 0.8 (stop running new tasks on that worker) corresponds to our floor, but ours watches the
whole machine (cgroup) and pauses only when 90% of capacity is in use, since the budget already
holds 40% of the available memory back; *terminate* 0.95 (the nanny restarts the worker) matches
our hard limit 0.95, where the child is killed and the task fails with a typed, retryable error.
Unlike Dask, our fractions of the budget apply to each child alone: one child may grow to nearly
the whole budget, which is the point of a pool sized by memory rather than by cores.
"""

from __future__ import annotations

import functools
import importlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from .cgroups import CgroupMemory, locate_memory_cgroup

logger = logging.getLogger(__name__)

MIB = 2**20
BUDGET_FRACTION = 0.60
SOFT_LIMIT_FRACTION = 0.70
HARD_LIMIT_FRACTION = 0.95
FLOOR_FRACTION = 0.10


@functools.cache
def _warn_once(message: str) -> None:
    """Log a degradation warning once per process (functools.cache remembers it was said)."""
    logger.warning(message)


class MemoryProbe:
    """Reads process RSS, system memory and the cgroup's limits; psutil optional.

    ``source`` is ``"psutil"``, ``"procfs"`` or ``"none"``. The roots exist so tests can point the
    probe at directories of real files.
    """

    def __init__(
        self,
        *,
        proc_root: Path = Path("/proc"),
        cgroup_root: Path = Path("/sys/fs/cgroup"),
        use_psutil: bool = True,
    ) -> None:
        self._proc_root = proc_root
        self._psutil = _import_psutil() if use_psutil else None
        self._processes: dict[int, object] = {}
        self._page_size = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
        if self._psutil is not None:
            self.source = "psutil"
        elif (proc_root / "meminfo").is_file():
            self.source = "procfs"
        else:
            self.source = "none"
        self._cgroup = locate_memory_cgroup(proc_root, cgroup_root)
        if self.source == "none" and self._cgroup is None:
            _warn_once(
                "process pool: no psutil, no /proc and no cgroup files; memory budget, per-child "
                "limits and the admission floor are disabled (only max_workers bounds the pool)"
            )

    @property
    def can_sample_processes(self) -> bool:
        return self.source != "none"

    def process_rss(self, pid: int) -> int | None:
        """Resident set size of ``pid`` in bytes, None if unknown or the process is gone."""
        if self._psutil is not None:
            return self._psutil_rss(pid)
        try:
            with open(self._proc_root / str(pid) / "statm", "rb") as handle:
                fields = handle.read().split()
            return int(fields[1]) * self._page_size
        except (OSError, IndexError, ValueError):
            return self._status_rss(pid)

    def forget(self, pid: int) -> None:
        """Drop cached state for a process that has exited."""
        self._processes.pop(pid, None)

    def system_total(self) -> int | None:
        if self._psutil is not None:
            return int(self._psutil.virtual_memory().total)
        return self._meminfo().get("MemTotal")

    def cgroup(self) -> CgroupMemory | None:
        return self._cgroup.read() if self._cgroup is not None else None

    def available(self) -> int | None:
        """Memory this process may still use: system available, capped by cgroup headroom."""
        if self._psutil is not None:
            system: int | None = int(self._psutil.virtual_memory().available)
        else:
            system = self._meminfo().get("MemAvailable")
        group = self.cgroup()
        headroom = group.headroom_bytes if group is not None else None
        known = [value for value in (system, headroom) if value is not None]
        return min(known) if known else None

    def capacity(self) -> int | None:
        """All the memory this process could ever use: MemTotal capped by the cgroup limit."""
        group = self.cgroup()
        limit = group.limit_bytes if group is not None else None
        known = [value for value in (self.system_total(), limit) if value is not None]
        return min(known) if known else None

    def oom_kill_count(self) -> int | None:
        """Kernel OOM kills so far: the cgroup's counter if it has one, else the system's."""
        group = self.cgroup()
        if group is not None and group.oom_kills is not None:
            return group.oom_kills
        return self._keyed_file("vmstat").get("oom_kill")

    def _psutil_rss(self, pid: int) -> int | None:
        assert self._psutil is not None
        try:
            process = self._processes.get(pid)
            if process is None:
                process = self._psutil.Process(pid)
                self._processes[pid] = process
            return int(process.memory_info().rss)  # type: ignore[attr-defined]
        except (self._psutil.Error, OSError):
            self._processes.pop(pid, None)
            return None

    def _status_rss(self, pid: int) -> int | None:
        try:
            text = (self._proc_root / str(pid) / "status").read_text()
        except OSError:
            return None
        for line in text.splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        return None

    def _meminfo(self) -> dict[str, int]:
        """/proc/meminfo values in bytes (the file states kB)."""
        return {key: value * 1024 for key, value in self._keyed_file("meminfo").items()}

    def _keyed_file(self, name: str) -> dict[str, int]:
        try:
            text = (self._proc_root / name).read_text()
        except OSError:
            return {}
        values: dict[str, int] = {}
        for line in text.splitlines():
            fields = line.replace(":", " ").split()
            if len(fields) >= 2 and fields[1].isdigit():
                values[fields[0]] = int(fields[1])
        return values


def _import_psutil() -> ModuleType | None:
    try:
        return importlib.import_module("psutil")
    except ImportError:
        return None


@dataclass(frozen=True)
class MemoryLimits:
    """The resolved thresholds in bytes; None means "not enforced"."""

    budget_bytes: int | None
    soft_limit_bytes: int | None
    hard_limit_bytes: int | None
    floor_bytes: int | None

    @classmethod
    def resolve(
        cls,
        probe: MemoryProbe,
        *,
        budget_mb: float | None,
        soft_limit_mb: float | None,
        hard_limit_mb: float | None,
        min_available_mb: float | None,
    ) -> MemoryLimits:
        """Fill in every threshold not given explicitly from the documented fractions."""
        budget = _mib_to_bytes(budget_mb)
        if budget is None:
            available = probe.available()
            budget = int(available * BUDGET_FRACTION) if available is not None else None
        if budget is None:
            _warn_once("process pool: memory available unknown; no memory budget is enforced")
        soft = _mib_to_bytes(soft_limit_mb)
        hard = _mib_to_bytes(hard_limit_mb)
        if budget is not None:
            soft = soft if soft is not None else int(budget * SOFT_LIMIT_FRACTION)
            hard = hard if hard is not None else int(budget * HARD_LIMIT_FRACTION)
        if not probe.can_sample_processes and (soft is not None or hard is not None):
            _warn_once("process pool: cannot read child RSS; soft and hard limits not enforced")
            soft = hard = None
        floor = _mib_to_bytes(min_available_mb)
        if floor is None:
            capacity = probe.capacity()
            floor = int(capacity * FLOOR_FRACTION) if capacity is not None else None
        if soft is not None and hard is not None and soft > hard:
            raise ValueError(
                f"soft limit {soft // MIB} MiB is above the hard limit {hard // MIB} MiB"
            )
        return cls(budget, soft, hard, floor)


def _mib_to_bytes(value: float | None) -> int | None:
    return None if value is None else int(value * MIB)
