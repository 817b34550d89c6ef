"""Streaming: a 10-lead ERA5 job's peak memory stays within 1.5x that of a 1-lead job.

Each measurement runs in a fresh process that streams one miner's leads the way the ERA5 job
does (one variable's levels at a time, scored with the fast scorer) and reports its peak RSS.
At 1 deg a whole lead is ~54 MB of float32 fields; holding ten leads would add ~0.5 GB.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = """
import itertools, json, resource, sys
from pathlib import Path
from gaia.tasks.weather.compute import score_fields
from gaia.tasks.weather.data.loader import ForecastLoader, Stage
from gaia.tasks.weather.data.stores import RunLayout

run_dir, hotkey, count = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
scored = 0
with ForecastLoader(RunLayout(run_dir), hotkey, Stage.ERA5) as loader:
    for lead in loader.leads[:count]:
        fields = (item.inputs for item in loader.iter_fields(lead))
        for _, batch in itertools.groupby(fields, key=lambda f: f.variable):
            scored += len(score_fields(list(batch), "fast"))
peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"fields": scored, "peak_mb": peak_mb}))
"""


@pytest.fixture(scope="module")
def one_degree_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gaia.tasks.weather.synth import generate_run

    root = tmp_path_factory.mktemp("streaming") / "run"
    generate_run(root, seed=5, resolution=1.0, miners=1)
    return root


def peak(run_dir: Path, leads: int) -> dict[str, float]:
    hotkey = json.loads((run_dir / "run.json").read_text())["miners"][0]["hotkey"]
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(run_dir), hotkey, str(leads)],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


@pytest.mark.slow
def test_ten_leads_peak_within_one_and_a_half_times_one_lead(one_degree_run: Path) -> None:
    one = peak(one_degree_run, 1)
    ten = peak(one_degree_run, 10)
    assert one["fields"] == 69 and ten["fields"] == 690
    assert ten["peak_mb"] <= 1.5 * one["peak_mb"], (one, ten)
