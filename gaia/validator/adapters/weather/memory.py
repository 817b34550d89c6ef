"""Memory estimates of weather jobs, derived from the grid size and the number of fields.

A stage job sends one batch at a time to the process pool: at the ERA5 stage one variable's 13
levels, at day-1 the five day-1 fields. A batch holds forecast, truth and climatology (and the
reference at day-1) as float32 in shared memory, which the child maps; the exact two-pass path
(fields with missing values) adds float64 temporaries. On top comes the child's interpreter with
numpy, xarray and numba loaded.
"""

from __future__ import annotations

from gaia.tasks.weather.variables import DAY1_VARIABLES, LEVELS

MIB = 1024 * 1024
CHILD_BASELINE_MB = 240
"""A spawned child with numpy, xarray, numba and the compiled kernels loaded (measured ~234 MB
of RSS, ~140 MB of it file-backed library pages that the children share)."""
KERNEL_OVERHEAD_ARRAYS = 4
"""float64 temporaries, in field-sized units, that the scorers hold beyond their inputs."""


def batch_memory_mb(lat: int, lon: int, stage: str) -> int:
    """Estimated peak RSS (MiB) of a child scoring one batch of ``stage`` on a lat x lon grid."""
    points = lat * lon
    if stage == "day1":
        fields, arrays = len(DAY1_VARIABLES), 4
    else:
        fields, arrays = len(LEVELS), 3
    inputs = fields * arrays * points * 4
    temporaries = KERNEL_OVERHEAD_ARRAYS * points * 8
    return CHILD_BASELINE_MB + -(-(inputs + temporaries) // MIB)


def grid_shape(resolution: float) -> tuple[int, int]:
    """(latitudes, longitudes) of a regular global grid at ``resolution`` degrees."""
    if not 0 < resolution <= 90 or (180 / resolution) % 1 > 1e-9:
        raise ValueError(f"resolution {resolution} must divide 180 degrees")
    return round(180 / resolution) + 1, round(360 / resolution)
