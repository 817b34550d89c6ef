"""ensure_json: exact JSON values pass as is; others take a strict round trip or are refused."""

from __future__ import annotations

import enum
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gaia.validator.core.json_value import ensure_json

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_json_values_come_back_equal_and_of_the_same_type(value: object) -> None:
    back = ensure_json(value, "value")
    assert back == value and type(back) is type(value)


class Colour(enum.StrEnum):
    RED = "red"


def test_subclasses_of_scalars_come_back_as_plain_json() -> None:
    back = ensure_json(Colour.RED, "value")
    assert back == "red" and type(back) is str
    assert type(ensure_json(True, "value")) is bool


@pytest.mark.parametrize(
    "bad",
    [math.nan, math.inf, -math.inf, {"x": math.nan}, {1, 2}, b"raw", "a\ud800b", ["\udfff"]],
)
def test_non_json_values_are_refused_naming_what(bad: object) -> None:
    with pytest.raises(TypeError, match="handler result is not JSON-serialisable"):
        ensure_json(bad, "handler result")
