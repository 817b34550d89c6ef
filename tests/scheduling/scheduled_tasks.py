"""A ``--tasks`` module with schedules, for ``gaia worker`` tests: the sleepy task (no sleep)
every 200 ms, each run appending its job id to the file named by GAIA_SCHEDULE_EFFECTS (if
set). Imported by a worker process through PYTHONPATH."""

from __future__ import annotations

import os
from datetime import timedelta

from gaia.examples.sleepy import SLEEP, Sleep, registry
from gaia.validator.scheduling import CatchUp, Schedule

schedules = [
    Schedule(
        "tick",
        SLEEP,
        every=timedelta(milliseconds=200),
        payload=Sleep(0.0, log=os.environ.get("GAIA_SCHEDULE_EFFECTS")),
        catch_up=CatchUp.NONE,
    )
]

__all__ = ["registry", "schedules"]
