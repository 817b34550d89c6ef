"""A small synthetic run shared by the weather adapter tests (3 deg, the eight graded miners)."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from gaia.tasks.weather.synth import generate_run

    root = tmp_path_factory.mktemp("weather") / "run"
    generate_run(root, seed=3, resolution=3.0, miners=8)
    return root
