"""The claim-argument rule every backend applies before it claims (lifecycle.claim_scope)."""

from __future__ import annotations

import pytest

from gaia.validator.core import lifecycle


def test_types_are_sorted_and_deduplicated_and_none_means_every_type() -> None:
    assert lifecycle.claim_scope(["b", "a", "b"], 30.0) == ["a", "b"]
    assert lifecycle.claim_scope(frozenset({"x"}), 0.5, count=10) == ["x"]
    assert lifecycle.claim_scope(None, 30.0) is None


@pytest.mark.parametrize(
    ("types", "lease_seconds", "count", "error", "message"),
    [
        ("weather.score", 30.0, 1, TypeError, "not the string 'weather.score'"),
        ([], 30.0, 1, ValueError, "at least one job type"),
        (None, 0.0, 1, ValueError, "lease_seconds must be > 0, got 0.0"),
        (None, float("nan"), 1, ValueError, "lease_seconds must be > 0, got nan"),
        (None, 30.0, 0, ValueError, "count must be >= 1, got 0"),
    ],
)
def test_bad_arguments_are_refused_with_a_clear_error(
    types: list[str] | str | None,
    lease_seconds: float,
    count: int,
    error: type[Exception],
    message: str,
) -> None:
    with pytest.raises(error, match=message):
        lifecycle.claim_scope(types, lease_seconds, count)


def test_a_backend_must_implement_claim_or_claim_many() -> None:
    """Each default is written in terms of the other; a backend with neither would recurse."""
    from gaia.validator.core.queue import Queue

    with pytest.raises(TypeError, match="must implement claim or claim_many"):

        class Neither(Queue):  # defining it is the test
            pass
