"""`gaia demo` and `gaia version` end to end."""

from __future__ import annotations

from pathlib import Path

import pytest

from gaia import __version__
from gaia.cli.main import main


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["version"]) == 0
    assert capsys.readouterr().out.strip() == f"gaia {__version__}"


def test_demo_runs_every_job_to_a_final_state(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    log_file = tmp_path / "demo.jsonl"
    assert main(["--log-file", str(log_file), "demo", "--jobs", "120"]) == 0
    out = capsys.readouterr().out
    assert "120 jobs in" in out
    assert "demo.fetch" in out and "demo.checksum" in out
    text = log_file.read_text()
    assert '"outcome": "retry"' in text and '"outcome": "dead"' in text
