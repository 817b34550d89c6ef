"""Weather field loading speed: `ForecastLoader.iter_fields` at 1.5 and 0.25 deg, one miner.

For each resolution a small synthetic run (one skilful miner, a few ERA5 leads) is generated into
a temporary directory with `generate_run`; then one ERA5-stage loader reads every lead field by
field (verified forecast chunk, truth, climatology on the truth grid, checks and repairs), as the
main job does. Figures per field:

- CPU ms: process CPU time (every thread, so zarr's I/O thread counts) over the lead's fields;
  the least over the leads is kept. This is the figure to compare, since the machine may be shared.
- wall ms: elapsed time of the same pass (least over the leads).
- open ms: constructing the loader (manifest, listing check, opening the stores).
- peak MB: the tracemalloc peak of reading 1 lead and of reading every lead with one loader
  (the second must not grow with the number of leads).

Run: ``python -m benchmarks.weather_loading [1.5] [0.25]`` (default both; generating the
0.25 deg run takes a few minutes). `run()` returns the rows like the other benchmark modules.
"""

from __future__ import annotations

import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence
from pathlib import Path

from gaia.tasks.weather.data.loader import ForecastLoader, LoadedField, Stage
from gaia.tasks.weather.data.stores import RunLayout
from gaia.tasks.weather.synth import generate_run

Row = dict[str, str | float]

CASES: tuple[tuple[float, tuple[int, ...]], ...] = (
    (1.5, (24, 48, 72, 96, 120)),
    (0.25, (24, 48)),
)
"""(resolution in degrees, ERA5 leads written and read)."""


def _read_lead(loader: ForecastLoader, lead: int) -> int:
    count = 0
    for item in loader.iter_fields(lead):
        if not isinstance(item, LoadedField):
            raise RuntimeError(f"benchmark miner skipped a field: {item}")
        count += 1
    return count


def _timed_leads(layout: RunLayout, hotkey: str, leads: Sequence[int]) -> Row:
    started = time.perf_counter()
    loader = ForecastLoader(layout, hotkey, Stage.ERA5)
    opened = time.perf_counter() - started
    best_cpu = best_wall = float("inf")
    fields = 0
    with loader:
        for lead in leads:
            cpu, wall = time.process_time(), time.perf_counter()
            fields = _read_lead(loader, lead)
            best_cpu = min(best_cpu, (time.process_time() - cpu) / fields)
            best_wall = min(best_wall, (time.perf_counter() - wall) / fields)
    return {
        "fields/lead": float(fields),
        "CPU ms/field": best_cpu * 1e3,
        "wall ms/field": best_wall * 1e3,
        "open ms": opened * 1e3,
    }


def _peak_mb(layout: RunLayout, hotkey: str, leads: Sequence[int]) -> float:
    tracemalloc.start()
    try:
        with ForecastLoader(layout, hotkey, Stage.ERA5) as loader:
            tracemalloc.reset_peak()
            for lead in leads:
                _read_lead(loader, lead)
            return tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


def measure(resolution: float, leads: Sequence[int], root: Path) -> Row:
    layout = generate_run(root / f"run-{resolution:g}", seed=11, resolution=resolution,
                          miners=1, forecast_hours=tuple(leads))
    hotkey = layout.read_info().miners[0].hotkey
    _timed_leads(layout, hotkey, leads[:1])  # warm the imports and the page cache
    row: Row = {"resolution": f"{resolution:g} deg", "grid": "x".join(
        str(n) for n in _grid_shape(layout, hotkey))}
    row.update(_timed_leads(layout, hotkey, leads))
    row["peak MB, 1 lead"] = _peak_mb(layout, hotkey, leads[:1])
    row[f"peak MB, {len(leads)} leads"] = _peak_mb(layout, hotkey, leads)
    return row


def _grid_shape(layout: RunLayout, hotkey: str) -> tuple[int, int]:
    with ForecastLoader(layout, hotkey, Stage.ERA5) as loader:
        return loader.truth_grid.shape


def run(cases: Sequence[tuple[float, tuple[int, ...]]] = CASES) -> list[Row]:
    """One row per resolution (generating the runs takes most of the time at 0.25 deg)."""
    with tempfile.TemporaryDirectory(prefix="gaia-bench-loading-") as tmp:
        return [measure(resolution, leads, Path(tmp)) for resolution, leads in cases]


def main(argv: list[str]) -> int:
    wanted = {float(arg) for arg in argv}
    cases = [case for case in CASES if not wanted or case[0] in wanted]
    for row in run(cases):
        print("  ".join(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}"
                        for key, value in row.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
