"""The JSON value type: what payloads, metadata and results may contain (no pickle anywhere)."""

from __future__ import annotations

import json
import math
from typing import TypeAlias

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
JSONObject: TypeAlias = dict[str, JSONValue]
_EXACT_SCALARS = (str, int, bool)


def ensure_json(value: object, what: str) -> JSONValue:
    """Return ``value`` if it survives a strict JSON round trip unchanged in type, else raise.

    NaN and infinities are refused, and so is text with lone surrogates (not Unicode, so not
    storable as UTF-8): other backends would reject them later, when the job could no longer
    say why.
    """
    if value is None:
        return None
    if isinstance(value, str | int) and type(value) in _EXACT_SCALARS:
        if isinstance(value, str) and not value.isascii():
            _check_text(value, what)
        return value  # already exact JSON (subclasses such as enums take the round trip)
    if isinstance(value, float) and type(value) is float and math.isfinite(value):
        return value
    try:
        text = json.dumps(value, allow_nan=False, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
    _check_text(text, what)
    decoded: JSONValue = json.loads(text)
    return decoded


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise TypeError(
            f"{what} is not JSON-serialisable: text with a lone surrogate "
            f"{text[exc.start : exc.end]!r} at position {exc.start} is not valid Unicode"
        ) from None
