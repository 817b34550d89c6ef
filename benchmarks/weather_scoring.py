"""Weather field scoring speed at 0.25 deg (721 x 1440), one core.

Compares FastScorer (fused one-pass kernel: compiled, and its numpy fallback), ReferenceScorer (xarray, one metric at a time)
and a straightforward xskillscore-based scorer against the floor: one pass that just reads the
forecast/truth/climatology triple. Fields are synthetic, smooth-ish float32 made in-process.

Timings are CPU time of this process pinned to one core, with every OpenBLAS library held to one
thread; the cases run in interleaved rounds and the least time of each is kept ("x floor" is
least over least). The machine may be shared, so the median over rounds of each round's ratio
to the floor is shown as well. OPENBLAS_CORETYPE, when set in the environment, forces an older
kernel family; the table title names the one in use.
Run: ``python -m benchmarks.weather_scoring`` (or ``python -m benchmarks weather_scoring``).
"""

from __future__ import annotations

import ctypes
import math
import os
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import cast

import numpy as np

from gaia.tasks.weather.fields import FieldInputs
from gaia.tasks.weather.scoring.kernels import FastScorer
from gaia.tasks.weather.scoring.reference import ReferenceScorer
from gaia.tasks.weather.scoring.twopass import exact_summary
from gaia.tasks.weather.scoring.weights import latitude_weights

LATS, LONS = 721, 1440
Row = dict[str, str | float]


def smooth_field(rng: np.random.Generator, base: float, amplitude: float) -> np.ndarray:
    """A float32 field made of a few large-scale waves plus a little grid-scale noise."""
    phi = np.deg2rad(np.linspace(90.0, -90.0, LATS))[:, None]
    lam = np.deg2rad(np.arange(LONS) * 360.0 / LONS)[None, :]
    field = np.full((LATS, LONS), base)
    for _ in range(6):
        k, m = rng.integers(1, 8, size=2)
        phase_lat, phase_lon = rng.uniform(0, 2 * np.pi, size=2)
        field += amplitude / 6 * np.cos(k * phi + phase_lat) * np.cos(m * lam + phase_lon)
    field += 0.02 * amplitude * rng.standard_normal((LATS, LONS))
    return field.astype(np.float32)


def make_inputs(with_reference: bool, seed: int = 0) -> FieldInputs:
    """A z500-like triple (and reference): truth, a forecast with error and bias, climatology."""
    rng = np.random.default_rng(seed)
    truth = smooth_field(rng, 55000.0, 3000.0)
    error = smooth_field(rng, 20.0, 60.0)
    climatology = (truth + smooth_field(rng, 0.0, 800.0)).astype(np.float32)
    reference = (truth + smooth_field(rng, 0.0, 40.0)).astype(np.float32)
    return FieldInputs(
        variable="z",
        level=500,
        lead_hours=12 if with_reference else 24,
        forecast=(truth + error).astype(np.float32),
        truth=truth,
        climatology=climatology,
        reference=reference if with_reference else None,
        lat=np.linspace(90.0, -90.0, LATS),
    )


def xskillscore_score(inputs: FieldInputs) -> dict[str, float]:
    """The same metrics, written the obvious way with xskillscore (benchmark baseline only)."""
    import xarray as xr
    import xskillscore as xs

    dims = ("lat", "lon")

    def field(values: np.ndarray) -> xr.DataArray:
        return xr.DataArray(values.astype(np.float64), dims=dims)

    f, o, c = field(inputs.forecast), field(inputs.truth), field(inputs.climatology)
    ref = field(inputs.reference) if inputs.reference is not None else c
    w = xr.DataArray(latitude_weights(inputs.lat), dims=("lat",)).broadcast_like(f)
    kwargs = {"dim": list(dims), "weights": w, "skipna": True}
    bias = float((f - o).mean(skipna=True))
    result = {
        "mse": float(xs.mse(f - bias, o, **kwargs)),
        "mse_raw": float(xs.mse(f, o, **kwargs)),
        "mse_reference": float(xs.mse(ref, o, **kwargs)),
        "mae_weighted": float(xs.mae(f, o, **kwargs)),
        "bias_weighted": float((f - o).weighted(w).mean(dims)),
        "bias": bias,
    }
    forecast_anomaly, truth_anomaly = f - c, o - c
    stds = (float(forecast_anomaly.std()), float(truth_anomaly.std()))
    result["acc"] = (
        float(xs.pearson_r(forecast_anomaly, truth_anomaly, **kwargs))
        if min(stds) >= 1e-12
        else math.nan
    )
    if inputs.reference is not None:
        result["clone_mse"] = float(xs.mse(f, ref, **kwargs))
        result["pattern_r"] = float(xs.pearson_r(f, ref, **kwargs))
    return result


def blas_libraries() -> list[ctypes.CDLL]:
    """The OpenBLAS libraries loaded in this process (numpy's and scipy's each bring one)."""
    with open("/proc/self/maps") as maps:
        paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower()})
    return [ctypes.CDLL(path) for path in paths if path.startswith("/")]


def _blas_function(library: ctypes.CDLL, name: str) -> Callable[..., object] | None:
    """openblas_<name>, under the prefixes and suffixes the wheels' builds use."""
    for prefix in ("scipy_openblas_", "openblas_"):
        for suffix in ("64_", ""):
            function = getattr(library, f"{prefix}{name}{suffix}", None)
            if function is not None:
                return cast(Callable[..., object], function)
    return None


def blas_core() -> str:
    """The OpenBLAS kernel family numpy runs (OPENBLAS_CORETYPE, if set, forces it)."""
    for library in blas_libraries():
        function = _blas_function(library, "get_corename")
        if function is not None:
            function.restype = ctypes.c_char_p  # type: ignore[attr-defined]
            return cast(bytes, function()).decode()
    return "unknown"


@contextmanager
def one_core() -> Iterator[None]:
    """Pin this thread to one core and keep every OpenBLAS library to one thread.

    OpenBLAS threads a large gemv over every core; its workers then spin for a while after the
    call, and their CPU time would count against whatever is measured next.
    """
    previous_affinity = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(previous_affinity)})
    restore = []
    for library in blas_libraries():
        get, set_ = (_blas_function(library, n) for n in ("get_num_threads", "set_num_threads"))
        if get is not None and set_ is not None:
            restore.append((set_, get()))
            set_(1)
    try:
        yield
    finally:
        for set_, threads in restore:
            set_(threads)
        os.sched_setaffinity(0, previous_affinity)


def best_seconds(action: Callable[[], object], repeats: int) -> float:
    """The least CPU time of `repeats` runs.

    CPU time of the process (all its threads) rather than wall time, so that other work on a
    shared machine does not count against the scorer while it waits for the core.
    """
    best = math.inf
    for _ in range(repeats):
        started = time.process_time()
        action()
        best = min(best, time.process_time() - started)
    return best


def run() -> list[Row]:
    """Rows of the results table (one core, one BLAS thread while measuring)."""
    with one_core():
        return _measure()


def _measure(rounds: int = 8) -> list[Row]:
    era5 = make_inputs(with_reference=False)
    day1 = make_inputs(with_reference=True)
    fast = FastScorer(engine="compiled")
    fallback = FastScorer(engine="numpy")
    for scorer in (fast, fallback):
        if scorer.one_pass(era5) is None or scorer.one_pass(day1) is None:
            raise RuntimeError("benchmark fields unexpectedly took the two-pass path")
    reference = ReferenceScorer()
    triple = (era5.forecast, era5.truth, era5.climatology)
    # (name, action, repeats per round); rounds are interleaved, so every case sees the same
    # mix of load from other work on the machine
    cases: list[tuple[str, Callable[[], object], int]] = [
        ("floor: np.max over f, o, c (one read)", lambda: [np.max(a) for a in triple], 30),
        ("floor: np.sum over f, o, c", lambda: [np.sum(a) for a in triple], 30),
        ("FastScorer, ERA5 field (f, o, c)", lambda: fast.score(era5), 30),
        ("FastScorer, day-1 field (f, o, c, ref)", lambda: fast.score(day1), 30),
        ("FastScorer numpy fallback, ERA5", lambda: fallback.score(era5), 15),
        ("FastScorer numpy fallback, day-1", lambda: fallback.score(day1), 15),
        ("FastScorer exact two-pass path, ERA5", lambda: exact_summary(era5, fast.config), 1),
        ("ReferenceScorer (xarray), ERA5", lambda: reference.score(era5), 1),
        ("xskillscore-based, ERA5", lambda: xskillscore_score(era5), 1),
    ]
    for _, action, _ in cases:  # warm-up: buffers, caches, lazy imports
        action()
    per_round: dict[str, list[float]] = {name: [] for name, _, _ in cases}
    for _ in range(rounds):
        for name, action, repeats in cases:
            per_round[name].append(best_seconds(action, repeats))

    floor_name, baseline_name = cases[0][0], cases[-1][0]
    floor, baseline = min(per_round[floor_name]), min(per_round[baseline_name])
    rows: list[Row] = []
    for name, seconds_by_round in per_round.items():
        seconds = min(seconds_by_round)
        ratios = [s / f for s, f in zip(seconds_by_round, per_round[floor_name], strict=True)]
        rows.append(
            {
                "what": name,
                "ms/field": seconds * 1e3,
                "fields/s": 1.0 / seconds,
                "x floor": seconds / floor,
                "x floor, median round": statistics.median(ratios),
                "x faster than xskillscore": baseline / seconds,
            }
        )
    return rows


def main() -> None:
    from gaia.cli.tables import print_table

    rows = run()
    columns = list(rows[0])
    print_table(
        f"weather scoring, {LATS}x{LONS} float32, one core, OpenBLAS core {blas_core()}",
        columns,
        [[row[c] for c in columns] for row in rows],
    )


if __name__ == "__main__":
    main()
