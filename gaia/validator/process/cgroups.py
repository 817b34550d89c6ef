"""Read the memory limit and usage of this process's cgroup (v2 or v1) from plain files.

Only files are read (no psutil, no subprocess); every path is relative to two roots that tests
point at a directory of real files. A limit that the kernel reports as "no limit" (``max`` in v2,
a number near 2**63 in v1) reads as ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

# cgroup v1 reports "unlimited" as PAGE_COUNTER_MAX rounded to a page (about 2**63); anything at or
# above 2**60 bytes (an exbibyte) is no real limit.
_UNLIMITED = 2**60


@dataclass(frozen=True)
class CgroupMemory:
    """Memory accounting of one cgroup: the tightest limit on the way to the root."""

    version: int
    path: Path
    limit_bytes: int | None
    usage_bytes: int | None
    reclaimable_bytes: int
    oom_kills: int | None

    @property
    def headroom_bytes(self) -> int | None:
        """How much more this cgroup may use: limit - (usage - reclaimable file cache)."""
        if self.limit_bytes is None or self.usage_bytes is None:
            return None
        used = max(0, self.usage_bytes - self.reclaimable_bytes)
        return max(0, self.limit_bytes - used)


@dataclass(frozen=True)
class MemoryCgroup:
    """Where this process's memory cgroup lives: its directory and its ancestors up to the mount."""

    version: int
    dirs: tuple[Path, ...]

    def read(self) -> CgroupMemory:
        """Read the current limit, usage and OOM-kill count (a few small files)."""
        leaf = self.dirs[0]
        if self.version == 2:
            limits = [_read_limit(d / "memory.max") for d in self.dirs]
            stat = _read_keyed(leaf / "memory.stat")
            return CgroupMemory(
                version=2,
                path=leaf,
                limit_bytes=_tightest(limits),
                usage_bytes=_read_int(leaf / "memory.current"),
                reclaimable_bytes=stat.get("inactive_file", 0),
                oom_kills=_read_keyed(leaf / "memory.events").get("oom_kill"),
            )
        stat = _read_keyed(leaf / "memory.stat")
        limits = [_read_limit(d / "memory.limit_in_bytes") for d in self.dirs]
        hierarchical = stat.get("hierarchical_memory_limit")
        if hierarchical is not None:
            limits.append(hierarchical if hierarchical < _UNLIMITED else None)
        return CgroupMemory(
            version=1,
            path=leaf,
            limit_bytes=_tightest(limits),
            usage_bytes=_read_int(leaf / "memory.usage_in_bytes"),
            reclaimable_bytes=stat.get("total_inactive_file", stat.get("inactive_file", 0)),
            oom_kills=_read_keyed(leaf / "memory.oom_control").get("oom_kill"),
        )


def locate_memory_cgroup(proc_root: Path, cgroup_root: Path) -> MemoryCgroup | None:
    """Find this process's memory cgroup (v2 preferred, then v1), or None if there is none."""
    try:
        lines = (proc_root / "self" / "cgroup").read_text().splitlines()
    except OSError:
        return None
    v2_path: str | None = None
    v1_path: str | None = None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        hierarchy, controllers, path = parts
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "memory" in controllers.split(","):
            v1_path = path
    if v2_path is not None and (cgroup_root / "cgroup.controllers").is_file():
        dirs = _candidate_dirs(cgroup_root, v2_path, "memory.current")
        if dirs:
            return MemoryCgroup(2, dirs)
    if v1_path is not None:
        dirs = _candidate_dirs(cgroup_root / "memory", v1_path, "memory.usage_in_bytes")
        if dirs:
            return MemoryCgroup(1, dirs)
    return None


def _candidate_dirs(mount: Path, path: str, marker: str) -> tuple[Path, ...]:
    """Directories from the process's own cgroup up to the mount point, deepest first.

    Inside a cgroup namespace the path in /proc/self/cgroup may not exist under the mount (the
    mount already is the process's cgroup), so directories without ``marker`` are skipped.
    """
    parts = [part for part in path.split("/") if part]
    dirs = [mount.joinpath(*parts[:depth]) for depth in range(len(parts), 0, -1)]
    dirs.append(mount)
    return tuple(directory for directory in dirs if (directory / marker).is_file())


def _tightest(limits: list[int | None]) -> int | None:
    real = [limit for limit in limits if limit is not None]
    return min(real) if real else None


def _read_limit(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if text == "max" or not text.isdigit():
        return None
    value = int(text)
    return value if value < _UNLIMITED else None


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _read_keyed(path: Path) -> dict[str, int]:
    """Parse ``key value`` lines (memory.stat, memory.events, memory.oom_control)."""
    try:
        text = path.read_text()
    except OSError:
        return {}
    values: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        if value.isdigit():
            values[key] = int(value)
    return values
