"""Tables printed to a log or a pipe keep every cell whole, whatever their width."""

from __future__ import annotations

import pytest

from gaia.cli.tables import print_table


def test_a_wide_table_reaches_a_pipe_unsqueezed(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    columns = [f"column-{i}" for i in range(16)]
    row = [f"value-{i}-in-full" for i in range(16)]
    print_table("wide", columns, [row])
    out = capsys.readouterr().out
    assert "…" not in out
    assert all(cell in out for cell in row) and all(name in out for name in columns)
    assert max(len(line) for line in out.splitlines()) > 80
