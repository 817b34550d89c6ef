"""The JSON value type: what payloads, metadata and results may contain (no pickle anywhere)."""

from __future__ import annotations

import json
from typing import TypeAlias

JSONValue: TypeAlias = bool | int | float | str | list["JSONValue"] | dict[str, "JSONValue"] | None
JSONObject: TypeAlias = dict[str, JSONValue]


def ensure_json(value: object, what: str) -> JSONValue:
    """Return ``value`` if it survives a strict JSON round trip unchanged in type, else raise.

    NaN and infinities are refused: they are not JSON and other backends would reject them later.
    """
    try:
        text = json.dumps(value, allow_nan=False, sort_keys=True)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{what} is not JSON-serialisable: {exc}") from None
    decoded: JSONValue = json.loads(text)
    return decoded
