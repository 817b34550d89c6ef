"""Peak memory and time of one full ERA5-stage miner job at 0.25 deg (9 variables, 13 levels,
10 leads), run the production way: SQLite queue, WorkerPool, loading in the worker process,
kernels in a ProcessPool child.

The synthetic input (one miner, ~6 GB on disk) is generated once into .bench/weather-0.25/.
Peak RSS is reported for the worker process (loading, verification) and for the largest child
(scoring kernels); the target is <= 1.5 GB for the job.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(".bench/weather-0.25")
RUN = ROOT / "run"

JOB_SCRIPT = """
import asyncio, json, resource, sys, time
from pathlib import Path
from gaia.validator.adapters.weather.runner import RunSettings, score_run

root = Path(sys.argv[1])
settings = RunSettings(queue_url=f"sqlite:///{root / 'queue.db'}",
                       results_url=f"sqlite:///{root / 'results.db'}",
                       shadow_log=root / "shadow.db", rollout="new=1,shadow=off",
                       concurrency=1, process_workers=1)
started = time.perf_counter()
rows = asyncio.run(score_run(root / "run", settings))
elapsed = time.perf_counter() - started
own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
row = rows[0]
print(json.dumps({"seconds": elapsed, "worker_peak_mb": own, "child_peak_mb": children,
                  "status": row.status, "leads": len(row.era5_leads)}))
"""


def ensure_run() -> None:
    if (RUN / "run.json").exists():
        return
    from gaia.tasks.weather.synth import generate_run

    shutil.rmtree(ROOT, ignore_errors=True)
    ROOT.mkdir(parents=True)
    generate_run(RUN, seed=11, resolution=0.25, miners=1)


def run() -> list[dict[str, str | float]]:
    started = time.perf_counter()
    ensure_run()
    generated = time.perf_counter() - started
    for stale in ("queue.db", "results.db", "shadow.db"):
        for path in ROOT.glob(f"{stale}*"):
            if path.is_dir():
                shutil.rmtree(path)
            else:
                path.unlink()
    out = subprocess.run(
        [sys.executable, "-c", JOB_SCRIPT, str(ROOT)], capture_output=True, text=True, check=True
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    peak = max(result["worker_peak_mb"], result["child_peak_mb"])
    return [
        {
            "metric": "synthetic 0.25 deg run generated (cached after the first time)",
            "value": generated,
            "unit": "s",
        },
        {
            "metric": "day-1 + ERA5 jobs of one miner, wall time",
            "value": result["seconds"],
            "unit": "s",
        },
        {"metric": "ERA5 leads scored", "value": float(result["leads"]), "unit": "leads"},
        {
            "metric": "worker process peak RSS (loading, verification)",
            "value": result["worker_peak_mb"],
            "unit": "MB",
        },
        {"metric": "scoring child peak RSS", "value": result["child_peak_mb"], "unit": "MB"},
        {"metric": "job peak RSS (largest process; target <= 1536)", "value": peak, "unit": "MB"},
    ]


if __name__ == "__main__":
    from gaia.cli.tables import print_table

    rows = run()
    print_table("weather_job", list(rows[0]), [list(r.values()) for r in rows])
