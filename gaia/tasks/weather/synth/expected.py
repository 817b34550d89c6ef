"""What a scorer should conclude about each synthetic miner, and the post-manifest tampering.

`corrupt_chunks` rewrites chunks of the corrupted-chunk miner after its manifest was frozen (a
plausible attack: the data changes, the claimed hash does not). `expected_outcomes` is the body
of expected.json: per miner its grade, recipe and the expected day-1 and ERA5 outcomes, and the
expected order of the graded miners (`grade_order`): every skilful miner's overall score above
every noisy one's, every noisy one's above every biased one's.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import zarr

from gaia.tasks.weather.data.stores import RunInfo, RunLayout
from gaia.tasks.weather.synth.grades import MISSING_VARIABLE, WRONG_UNITS, Grade, MinerPlan
from gaia.tasks.weather.variables import DAY1_LEAD_HOURS, ERA5_LEAD_HOURS, LEVELS

CORRUPTION_SHIFT = 0.5
GRADE_ORDER = (Grade.SKILFUL, Grade.NOISY, Grade.BIASED)
"""Graded miners by overall score: every miner of a grade above every miner of the next."""
_TARGETS: tuple[tuple[str, int | None, int], ...] = (
    ("2t", None, DAY1_LEAD_HOURS),
    ("z", 500, ERA5_LEAD_HOURS[0]),
)
"""(variable, level, lead) of each chunk altered: one read at day-1, one at the first ERA5 lead."""


def corrupt_chunks(
    run: RunLayout, plans: Sequence[MinerPlan], hours: Sequence[int]
) -> dict[str, list[str]]:
    """Shift chosen planes of corrupted-chunk miners by +0.5; returns hotkey -> changed files."""
    changed: dict[str, list[str]] = {}
    steps = {hour: index for index, hour in enumerate(hours)}
    for plan in plans:
        if plan.grade is not Grade.CORRUPTED_CHUNK:
            continue
        group = zarr.open_group(store=str(run.forecast(plan.hotkey)), mode="r+", zarr_format=2)
        files: list[str] = []
        for name, level, lead in _TARGETS:
            step = steps.get(lead, 0)
            array = group[name]
            assert isinstance(array, zarr.Array)
            if level is None:
                index: tuple[int, ...] = (step,)
                key = f"{name}/{step}.0.0"
            else:
                index = (step, LEVELS.index(level))
                key = f"{name}/{step}.{LEVELS.index(level)}.0.0"
            plane = np.asarray(array[index])
            array[index] = plane + np.float32(CORRUPTION_SHIFT)
            files.append(key)
        changed[plan.hotkey] = sorted(set(files))
    return changed


_OUTCOMES: dict[Grade, tuple[str, str, str]] = {
    Grade.SKILFUL: ("scored", "scored", "small smooth error growing with lead"),
    Grade.NOISY: ("scored", "scored", "moderate smooth error growing with lead plus white noise"),
    Grade.BIASED: (
        "scored", "scored",
        "fixed large-scale systematic error (latitude-dependent bias and misplaced stationary "
        "waves, growing with lead), damped anomalies, small smooth error, and a constant offset "
        "(only the offset is removed by bias correction)",
    ),
    Grade.CLONE: (
        "clone_penalty", "scored",
        "reference forecast + tiny noise: clone distance far below every threshold",
    ),
    Grade.WRONG_UNITS: (
        "units_auto_converted", "data_check_failed:units",
        "z written as geopotential height (units 'm'), 2t in Celsius (units 'degC')",
    ),
    Grade.NAN_BORDER: (
        "scored", "scored",
        "southernmost latitude row is NaN in every field; edge salvage restores it",
    ),
    Grade.CORRUPTED_CHUNK: (
        "verification_failed", "verification_failed_at_corrupted_lead",
        "chunks rewritten (+0.5) after the manifest was frozen",
    ),
    Grade.MISSING_VARIABLE: (
        f"scored_without_{MISSING_VARIABLE}", "data_check_failed:missing_variable",
        f"variable {MISSING_VARIABLE} absent from the store",
    ),
}


def expected_outcomes(
    info: RunInfo, plans: Sequence[MinerPlan], corrupted: dict[str, list[str]]
) -> dict[str, object]:
    miners: dict[str, object] = {}
    for plan in plans:
        day1, era5, description = _OUTCOMES[plan.grade]
        entry: dict[str, object] = {
            "uid": plan.uid,
            "grade": plan.grade.value,
            "description": description,
            "error_scale": plan.recipe.error_scale,
            "noise_scale": plan.recipe.noise_scale,
            "offset_sigmas": plan.recipe.offset_sigmas,
            "systematic_sigmas": plan.recipe.systematic_sigmas,
            "anomaly_damping": plan.recipe.anomaly_damping,
            "era5_conventions": plan.era5_conventions,
            "expected_day1": day1,
            "expected_era5": era5,
        }
        if plan.grade is Grade.CORRUPTED_CHUNK:
            entry["corrupted_files"] = corrupted.get(plan.hotkey, [])
            entry["failing_era5_leads"] = [ERA5_LEAD_HOURS[0]]
        if plan.grade is Grade.WRONG_UNITS:
            entry["wrong_units"] = {name: spec[0] for name, spec in WRONG_UNITS.items()}
        if plan.grade is Grade.MISSING_VARIABLE:
            entry["missing_variables"] = list(plan.missing_variables)
        miners[plan.hotkey] = entry
    return {
        "run_id": info.run_id,
        "seed": info.extra.get("seed"),
        "grade_order": [grade.value for grade in GRADE_ORDER],
        "miners": miners,
    }
