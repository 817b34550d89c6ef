"""The tolerance comparator: nested structures, NaN and infinities, tolerance edges, structural
differences, path syntax, and numeric duck typing (numpy scalars without importing numpy)."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass, field, replace
from decimal import Decimal
from enum import Enum
from fractions import Fraction

import pytest

from gaia.validator.migration import Mismatch, Tolerance, compare


@dataclass(frozen=True)
class Variable:
    skill: float
    rmse: float


@dataclass(frozen=True)
class Lead:
    hours: int
    variables: dict[str, Variable]


@dataclass(frozen=True)
class RunScore:
    miner: str
    leads: list[Lead]
    status: str = "ok"
    extras: dict[str, object] = field(default_factory=dict)


class Status(Enum):
    OK = "ok"
    CLAMPED = "clamped"


def run_score(skill_of_z: float = 0.5) -> RunScore:
    leads = [
        Lead(24 * n, {"z": Variable(skill_of_z if n == 3 else 0.5, 120.0), "t": Variable(0.4, 1.5)})
        for n in range(5)
    ]
    return RunScore("hk", leads)


def paths(mismatches: list[Mismatch]) -> list[str]:
    return [m.path for m in mismatches]


def test_identical_nested_outputs_have_no_mismatches() -> None:
    assert compare(run_score(), run_score()) == []


def test_a_changed_leaf_is_reported_at_its_path_with_its_differences() -> None:
    [mismatch] = compare(run_score(0.5), run_score(0.6))
    assert mismatch.path == "leads[3].variables.z.skill"
    assert (mismatch.legacy, mismatch.new) == ("0.5", "0.6")
    assert mismatch.abs_diff == pytest.approx(0.1)
    assert mismatch.rel_diff == pytest.approx(0.1 / 0.6)


def test_nan_against_nan_is_equal_and_nan_against_a_number_is_not() -> None:
    nan = float("nan")
    assert compare({"acc": nan}, {"acc": nan}) == []
    [mismatch] = compare({"acc": nan}, {"acc": 0.3})
    assert (mismatch.path, mismatch.legacy, mismatch.new) == ("acc", "nan", "0.3")
    assert mismatch.abs_diff is None and mismatch.rel_diff is None


def test_infinities() -> None:
    inf = float("inf")
    assert compare([inf, -inf], [inf, -inf]) == []
    assert paths(compare([inf, 1e308], [-inf, inf])) == ["[0]", "[1]"]
    [overflow] = compare(1.7e308, -1.7e308)  # the difference overflows: reported as unknown
    assert overflow.abs_diff is None and overflow.rel_diff == pytest.approx(2.0)


def test_absolute_tolerance_edge() -> None:
    loose = Tolerance(rtol=0.0, atol=0.5)
    assert compare(1.0, 1.5, loose) == []  # exactly atol apart: equal
    assert compare(1.5, 1.0, loose) == []
    assert len(compare(1.0, 1.5000001, loose)) == 1


def test_relative_tolerance_edge_is_symmetric() -> None:
    quarter = Tolerance(rtol=0.25)
    assert compare(3.0, 4.0, quarter) == []  # |3 - 4| = 0.25 * max(3, 4)
    assert compare(4.0, 3.0, quarter) == []
    assert len(compare(3.0, 4.01, quarter)) == 1
    assert len(compare(4.01, 3.0, quarter)) == 1


def test_default_tolerance_is_tight() -> None:
    assert compare(1.0, 1.0 + 1e-12) == []
    assert len(compare(1.0, 1.0 + 1e-8)) == 1
    assert compare(0.0, 0.0) == [] and compare(-0.0, 0.0) == []
    assert len(compare(0.0, 1e-300)) == 1  # no absolute slack unless asked for


def test_ints_are_always_exact_and_compare_numerically_with_floats() -> None:
    [mismatch] = compare({"count": 3}, {"count": 4})
    assert (mismatch.abs_diff, mismatch.rel_diff) == (1.0, 0.25)
    assert compare(1, 1.0) == []
    assert compare(10**400, 10**400) == []
    [huge] = compare(10**400, 10**400 + 1)
    assert huge.abs_diff == 1.0
    assert len(compare(1, 2, Tolerance(atol=1.0))) == 1  # ints never get slack


def test_booleans_are_not_numbers() -> None:
    [mismatch] = compare({"ok": True}, {"ok": 1})
    assert (mismatch.path, mismatch.legacy, mismatch.new) == ("ok", "True", "1")
    assert len(compare(True, False)) == 1
    assert compare(True, True) == []


def test_missing_keys_are_mismatches_on_either_side() -> None:
    found = compare({"a": 1.0, "b": 2.0}, {"a": 1.0, "c": 3.0})
    assert [(m.path, m.legacy, m.new) for m in found] == [
        ("b", "2.0", "<missing>"),
        ("c", "<missing>", "3.0"),
    ]


def test_type_changes_are_mismatches() -> None:
    found = compare(
        {"x": 1.5, "y": {"k": 1}, "z": None, "w": "text"},
        {"x": "1.5", "y": [1], "z": 0.0, "w": b"text"},
    )
    assert [(m.path, m.legacy, m.new) for m in found] == [
        ("x", "1.5", "'1.5'"),
        ("y", "<dict with 1 keys>", "<list of length 1>"),
        ("z", "None", "0.0"),
        ("w", "'text'", "b'text'"),
    ]


def test_a_length_change_is_reported_and_the_common_prefix_still_compared() -> None:
    found = compare({"leads": [1.0, 2.0, 3.0]}, {"leads": [1.0, 2.0, 9.0, 4.0]})
    assert [(m.path, m.legacy, m.new) for m in found] == [
        ("leads", "<list of length 3>", "<list of length 4>"),
        ("leads[2]", "3.0", "9.0"),
    ]


def test_dataclass_type_change_and_field_difference() -> None:
    @dataclass
    class Other:
        skill: float
        rmse: float

    [changed] = compare(Variable(0.5, 1.0), Other(0.5, 1.0))
    assert (changed.path, changed.legacy, changed.new) == ("<root>", "<Variable>", "<Other>")
    base = run_score()
    edited = replace(base, status="clamped", extras={"note": "x"})
    assert paths(compare(base, edited)) == ["status", "extras.note"]


def test_lists_and_tuples_are_interchangeable() -> None:
    assert compare({"v": [1.0, (2.0, 3.0)]}, {"v": (1.0, [2.0, 3.0])}) == []


def test_path_segments_for_awkward_keys() -> None:
    found = compare(
        {"500 hPa": 1.0, 850: {"t2m": 1.0}, "500": 1.0, (1, 2): 1.0},
        {"500 hPa": 2.0, 850: {"t2m": 2.0}, "500": 2.0, (1, 2): 2.0},
    )
    assert paths(found) == ['["500 hPa"]', "850.t2m", '["500"]', "[(1, 2)]"]
    assert paths(compare([{"a": [0.0, 1.0]}], [{"a": [0.0, 2.0]}])) == ["[0].a[1]"]
    assert paths(compare(1.0, 2.0)) == ["<root>"]


def test_enums_compare_by_identity_of_value_and_class() -> None:
    assert compare({"status": Status.OK}, {"status": Status.OK}) == []
    [mismatch] = compare({"status": Status.OK}, {"status": Status.CLAMPED})
    assert (mismatch.legacy, mismatch.new) == ("<Status.OK: 'ok'>", "<Status.CLAMPED: 'clamped'>")
    assert len(compare(Status.OK, "ok")) == 1


def test_number_like_objects_are_duck_typed_through_float() -> None:
    assert compare(Decimal("1.5"), 1.5) == []
    assert compare(Fraction(1, 3), 1 / 3) == []
    [mismatch] = compare({"x": Decimal("1.5")}, {"x": Fraction(7, 4)})
    assert mismatch.abs_diff == pytest.approx(0.25)


def test_numpy_scalars_and_arrays() -> None:
    np = pytest.importorskip("numpy")
    assert compare({"a": np.float32(1.5), "b": np.int64(3)}, {"a": 1.5, "b": 3}) == []
    assert compare(np.float64("nan"), float("nan")) == []
    assert compare(np.bool_(True), True) == []
    legacy = {"field": np.array([[1.0, 2.0], [3.0, 4.0]])}
    found = compare(legacy, {"field": [[1.0, 2.0], [3.0, 5.0]]})
    assert paths(found) == ["field[1][1]"]
    assert found[0].abs_diff == 1.0


def test_other_objects_compare_with_equality() -> None:
    assert compare({1, 2}, {2, 1}) == []
    [mismatch] = compare(frozenset({1}), frozenset({2}))
    assert (mismatch.legacy, mismatch.new) == ("frozenset({1})", "frozenset({2})")


def test_long_values_are_shortened_in_descriptions() -> None:
    [mismatch] = compare("x" * 500, "y" * 500)
    assert len(mismatch.legacy) == 200 and mismatch.legacy.endswith("...")


def test_a_cycle_is_a_clear_error() -> None:
    looped: list[object] = []
    looped.append(looped)
    with pytest.raises(ValueError, match="nest deeper than 200 levels"):
        compare(looped, looped)


@pytest.mark.parametrize(
    ("rtol", "atol"), [(-1e-9, 0.0), (0.0, float("nan")), (float("inf"), 0.0), (True, 0.0)]
)
def test_bad_tolerances_are_refused(rtol: float, atol: float) -> None:
    with pytest.raises(ValueError, match=r"tolerance (rtol|atol)"):
        Tolerance(rtol=rtol, atol=atol)


def test_the_migration_package_imports_without_numpy() -> None:
    code = (
        "import sys, gaia.validator.migration, gaia.cli.shadow_report;"
        "print(sorted(m for m in ('numpy', 'xarray', 'rich') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
