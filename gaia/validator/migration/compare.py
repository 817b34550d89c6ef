"""Compare two outputs of the same shape, leaf by leaf, within a numeric tolerance.

Supported values: dataclass instances, mappings, lists and tuples (interchangeable), numbers
(``int``, ``float`` and anything convertible with ``float()``, such as numpy scalars; objects with a
``tolist()`` method, such as numpy arrays, are compared as the lists it returns), strings, bytes,
booleans, enums and None. Anything else is compared with ``==``.

Two numbers are equal when ``|a - b| <= atol + rtol * max(|a|, |b|)`` (symmetric in a and b), when
both are NaN, or when both are the same infinity. Two ints (counts, hours, levels) are always
compared exactly. Booleans are not numbers here: ``True`` against ``1`` is a type change.

Each difference becomes one ``Mismatch`` whose path names the leaf, e.g.
``leads[3].variables.z.skill``: ``[3]`` is a list index, ``.z`` a mapping key or dataclass field,
``["500 hPa"]`` a mapping key that is not a plain name, ``.500`` an integer mapping key.
Structural differences (a missing key, a changed type, a changed length) are mismatches at the
container's path; a value at the top level has the path ``<root>``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import cast

ROOT_PATH = "<root>"
MISSING = "<missing>"
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_MAX_DEPTH = 200
_MAX_TEXT = 200


@dataclass(frozen=True)
class Mismatch:
    """One differing leaf (or container) between the legacy and the new output.

    ``legacy`` and ``new`` are short descriptions of the two values. ``abs_diff`` and ``rel_diff``
    are set when both values are finite numbers: ``|a - b|`` and ``|a - b| / max(|a|, |b|)``.
    """

    path: str
    legacy: str
    new: str
    abs_diff: float | None = None
    rel_diff: float | None = None


@dataclass(frozen=True)
class Tolerance:
    """How close two numbers must be to count as equal (see the module docstring)."""

    rtol: float = 1e-9
    atol: float = 0.0

    def __post_init__(self) -> None:
        for label, value in (("rtol", self.rtol), ("atol", self.atol)):
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError(f"tolerance {label} must be a number, got {value!r}")
            if not math.isfinite(value) or value < 0:
                raise ValueError(f"tolerance {label} must be finite and >= 0, got {value!r}")


def compare(legacy: object, new: object, tolerance: Tolerance | None = None) -> list[Mismatch]:
    """Every difference between ``legacy`` and ``new``; an empty list when they agree."""
    return list(_walk(legacy, new, "", tolerance or Tolerance(), 0))


def describe(value: object) -> str:
    """A short, readable description of a value as it appears in a mismatch."""
    if value is _Absent.MISSING:
        return MISSING
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return f"<{type(value).__name__}>"
    if isinstance(value, Mapping):
        return f"<{type(value).__name__} with {len(value)} keys>"
    if isinstance(value, list | tuple):
        return f"<{type(value).__name__} of length {len(value)}>"
    text = repr(value)
    return text if len(text) <= _MAX_TEXT else text[: _MAX_TEXT - 3] + "..."


class _Absent(Enum):
    MISSING = "missing"


class _Kind(Enum):
    NONE = "none"
    BOOL = "bool"
    NUMBER = "number"
    TEXT = "text"
    SEQUENCE = "sequence"
    MAPPING = "mapping"
    RECORD = "dataclass"
    OTHER = "other"


def _normalise(value: object) -> object:
    """Turn array-likes (numpy scalars and arrays) into plain Python values via ``tolist()``."""
    if isinstance(value, bool | int | float | str | bytes | list | tuple | dict | Enum):
        return value
    if value is None or dataclasses.is_dataclass(value) or isinstance(value, Mapping):
        return value
    to_list = getattr(value, "tolist", None)
    if callable(to_list):
        try:
            return to_list()
        except TypeError:
            return value
    return value


def _kind(value: object) -> _Kind:
    if value is None:
        return _Kind.NONE
    if isinstance(value, bool):
        return _Kind.BOOL
    if isinstance(value, Enum):
        return _Kind.OTHER
    if isinstance(value, int | float):
        return _Kind.NUMBER
    if isinstance(value, str | bytes):
        return _Kind.TEXT
    if isinstance(value, list | tuple):
        return _Kind.SEQUENCE
    if isinstance(value, Mapping):
        return _Kind.MAPPING
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _Kind.RECORD
    if hasattr(value, "__float__"):
        return _Kind.NUMBER
    return _Kind.OTHER


def _walk(
    legacy: object, new: object, path: str, tolerance: Tolerance, depth: int
) -> Iterator[Mismatch]:
    if depth > _MAX_DEPTH:
        raise ValueError(
            f"outputs nest deeper than {_MAX_DEPTH} levels at {path or ROOT_PATH} "
            "(a cycle, or a structure this comparator does not handle)"
        )
    legacy, new = _normalise(legacy), _normalise(new)
    kind = _kind(legacy)
    if kind is not _kind(new):
        yield Mismatch(path or ROOT_PATH, describe(legacy), describe(new))
        return
    yield from _WALKERS.get(kind, _walk_leaf)(legacy, new, path, tolerance, depth)


def _walk_leaf(
    legacy: object, new: object, path: str, tolerance: Tolerance, depth: int
) -> Iterator[Mismatch]:
    if not _same_leaf(legacy, new):
        yield Mismatch(path or ROOT_PATH, describe(legacy), describe(new))


def _walk_number(
    legacy: object, new: object, path: str, tolerance: Tolerance, depth: int
) -> Iterator[Mismatch]:
    mismatch = _compare_numbers(legacy, new, path or ROOT_PATH, tolerance)
    if mismatch is not None:
        yield mismatch


def _walk_sequence(
    legacy: object, new: object, path: str, tolerance: Tolerance, depth: int
) -> Iterator[Mismatch]:
    first, second = cast(Sequence[object], legacy), cast(Sequence[object], new)
    if len(first) != len(second):
        yield Mismatch(path or ROOT_PATH, describe(first), describe(second))
    for index, (a, b) in enumerate(zip(first, second, strict=False)):
        yield from _walk(a, b, f"{path}[{index}]", tolerance, depth + 1)


def _walk_mapping(
    legacy: object, new: object, path: str, tolerance: Tolerance, depth: int
) -> Iterator[Mismatch]:
    first, second = cast(Mapping[object, object], legacy), cast(Mapping[object, object], new)
    keys = list(first) + [key for key in second if key not in first]
    for key in keys:
        a = first.get(key, _Absent.MISSING)
        b = second.get(key, _Absent.MISSING)
        child = _join(path, key_segment(key))
        if a is _Absent.MISSING or b is _Absent.MISSING:
            yield Mismatch(child, describe(a), describe(b))
        else:
            yield from _walk(a, b, child, tolerance, depth + 1)


def _walk_record(
    legacy: object, new: object, path: str, tolerance: Tolerance, depth: int
) -> Iterator[Mismatch]:
    if type(legacy) is not type(new):
        yield Mismatch(path or ROOT_PATH, describe(legacy), describe(new))
        return
    for field in dataclasses.fields(legacy):  # type: ignore[arg-type]
        yield from _walk(
            getattr(legacy, field.name),
            getattr(new, field.name),
            _join(path, f".{field.name}"),
            tolerance,
            depth + 1,
        )


_Walker = Callable[[object, object, str, Tolerance, int], Iterator[Mismatch]]
_WALKERS: dict[_Kind, _Walker] = {
    _Kind.NUMBER: _walk_number,
    _Kind.SEQUENCE: _walk_sequence,
    _Kind.MAPPING: _walk_mapping,
    _Kind.RECORD: _walk_record,
}


def _join(path: str, segment: str) -> str:
    return segment[1:] if not path and segment.startswith(".") else path + segment


def key_segment(key: object) -> str:
    """The path segment of a mapping key: ``.name``, ``.500`` or ``["500 hPa"]``."""
    if isinstance(key, str):
        return f".{key}" if _PLAIN_KEY.fullmatch(key) else f"[{json.dumps(key)}]"
    if isinstance(key, int) and not isinstance(key, bool):
        return f".{key}"
    return f"[{key!r}]"


def _same_leaf(a: object, b: object) -> bool:
    try:
        return bool(a == b) and type(a) is type(b)
    except Exception:  # an __eq__ that raises is a difference, not a crash
        return False


def _compare_numbers(a: object, b: object, path: str, tolerance: Tolerance) -> Mismatch | None:
    if isinstance(a, int) and isinstance(b, int):
        if a == b:
            return None
        gap = abs(a - b)
        return Mismatch(
            path, describe(a), describe(b), _finite(gap), _finite(gap / max(abs(a), abs(b)))
        )
    x, y = _as_float(a), _as_float(b)
    if x is None or y is None:  # beyond the float range: compare exactly
        return None if _same_number(a, b) else Mismatch(path, describe(a), describe(b))
    if math.isnan(x) or math.isnan(y):
        equal = math.isnan(x) and math.isnan(y)
        return None if equal else Mismatch(path, repr(x), repr(y))
    if math.isinf(x) or math.isinf(y):
        return None if x == y else Mismatch(path, repr(x), repr(y))
    difference = abs(x - y)
    scale = max(abs(x), abs(y))
    if difference <= tolerance.atol + tolerance.rtol * scale:
        return None
    relative = abs(x / scale - y / scale)  # no overflow, unlike difference / scale
    return Mismatch(path, repr(x), repr(y), _finite(difference), relative)


def _as_float(value: object) -> float | None:
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError):
        return None


def _same_number(a: object, b: object) -> bool:
    try:
        return bool(a == b)
    except Exception:
        return False


def _finite(value: float) -> float | None:
    """A difference that overflowed to infinity is reported as unknown (None)."""
    try:
        converted = float(value)
    except OverflowError:
        return None
    return converted if math.isfinite(converted) else None
