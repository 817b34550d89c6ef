"""`gaia weather` options: --data is accepted before or after the action, as the hints print it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from gaia.cli.main import build_parser


@pytest.mark.parametrize(
    "words",
    [
        ["weather", "--data", "/srv/w", "compare"],
        ["weather", "compare", "--data", "/srv/w"],
        ["weather", "--data", "/elsewhere", "worker", "--data", "/srv/w"],
    ],
)
def test_data_is_taken_before_or_after_the_action(words: list[str]) -> None:
    assert build_parser().parse_args(words).data == Path("/srv/w")


def test_data_defaults_when_given_nowhere() -> None:
    assert build_parser().parse_args(["weather", "compare"]).data == Path("data/weather")


@pytest.mark.parametrize("extra", [[], ["--enqueue-only"]])
def test_scoring_a_directory_that_is_not_a_run_says_so(tmp_path: Path, extra: list[str]) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "gaia.cli.main",
            "weather",
            "--data",
            str(tmp_path / "data"),
            "score",
            "--run",
            str(tmp_path / "nowhere"),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode != 0
    assert f"--run {tmp_path / 'nowhere'}: not a scoring run (no run.json there)" in result.stderr
    assert "Traceback" not in result.stderr
