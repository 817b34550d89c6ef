"""`gaia weather` options: --data is accepted before or after the action, as the hints print it."""

from __future__ import annotations

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
