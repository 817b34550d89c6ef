"""Layout rules the plan sets: file length, a standard-library-only core, lazy subsystems."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def test_no_source_file_exceeds_the_line_limit() -> None:
    too_long = {
        str(path.relative_to(ROOT)): n
        for path in (ROOT / "gaia").rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not too_long, f"files over {MAX_LINES} lines: {too_long}"


def imported_by(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return {name.split(".")[0] for name in out.stdout.split()}


def test_core_imports_only_the_standard_library() -> None:
    baseline = imported_by("pass")
    outside = imported_by("import gaia.validator.core") - baseline - set(sys.stdlib_module_names)
    outside.discard("gaia")
    assert not outside, f"the core pulled in third-party modules: {sorted(outside)}"


def test_importing_the_package_and_queue_registry_is_light() -> None:
    heavy = {"numpy", "xarray", "zarr", "numba", "redis", "asyncpg", "psutil", "rich"}
    loaded = imported_by("import gaia, gaia.validator.queues, gaia.validator.workers")
    assert not loaded & heavy, f"heavy modules imported eagerly: {sorted(loaded & heavy)}"


def test_numba_loads_only_when_the_compiled_scorer_is_first_used() -> None:
    """Importing the scorers (as a process-pool child does before it knows its work) must not
    pay numba's import; the compiled engine imports it on first use."""
    assert "numba" not in imported_by(
        "import gaia.tasks.weather.scoring.kernels, gaia.tasks.weather.compute"
    )
    assert "numba" in imported_by(
        "from gaia.tasks.weather.scoring.kernels import FastScorer; FastScorer().resolved_engine"
    )
