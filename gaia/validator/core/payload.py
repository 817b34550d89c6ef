"""Decode a JSON payload into a task's typed payload (a dataclass) and encode it back.

Decoding validates every field against the dataclass's type hints and raises
:class:`PayloadError` naming the path of the first bad field (``payload.miners[2].uid``), so an
invalid payload is dead-lettered with a message a person can act on. Supported field types: str,
int, float (ints accepted), bool, None, Optional/unions of these, list[T], tuple[T, ...],
dict[str, T], Literal, Enum, nested dataclasses, and JSON values (``JSONValue`` / ``JSONObject``).
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import types
import typing
from typing import TypeVar, cast

from gaia.validator.core.errors import PayloadError
from gaia.validator.core.json_value import JSONObject, JSONValue

T = TypeVar("T")


def decode_payload(schema: type[T], data: JSONObject) -> T:
    """Build ``schema`` from ``data``; ``schema`` is a dataclass type or ``dict`` (no checking)."""
    if schema is dict:
        return cast(T, data)
    if not dataclasses.is_dataclass(schema):
        raise TypeError(f"payload schema must be a dataclass or dict, got {schema!r}")
    return cast(T, _decode(schema, data, "payload"))


def encode_payload(value: object) -> JSONObject:
    """The JSON object for a payload dataclass instance (or a dict, returned as is)."""
    if isinstance(value, dict):
        return cast(JSONObject, value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        encoded = _encode(value)
        assert isinstance(encoded, dict)
        return encoded
    raise TypeError(f"payload must be a dataclass instance or a dict, got {type(value).__name__}")


def _encode(value: object) -> JSONValue:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _encode(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return _encode(value.value)
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    raise TypeError(f"cannot encode {type(value).__name__} into a JSON payload")


_JSON_ALIASES = (JSONValue, JSONObject)


def _decode(tp: object, value: object, path: str) -> object:
    if tp in _JSON_ALIASES or tp is typing.Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    if origin is typing.Union or origin is types.UnionType:
        return _decode_union(typing.get_args(tp), value, path)
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise PayloadError(f"{path}: expected one of {list(allowed)!r}, got {value!r}")
        return value
    if origin in (list, tuple, dict):
        return _decode_container(origin, typing.get_args(tp), value, path)
    if isinstance(tp, type):
        return _decode_class(tp, value, path)
    raise PayloadError(f"{path}: unsupported field type {tp!r} in the payload schema")


def _decode_union(options: tuple[object, ...], value: object, path: str) -> object:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _decode(option, value, path)
        except PayloadError as exc:
            errors.append(str(exc))
    raise PayloadError(errors[0] if len(errors) == 1 else f"{path}: no type fits: {errors}")


def _decode_container(origin: object, args: tuple[object, ...], value: object, path: str) -> object:
    if origin is dict:
        if not isinstance(value, dict):
            raise PayloadError(f"{path}: expected an object, got {_name(value)}")
        item_type = args[1] if len(args) == 2 else object
        return {k: _decode(item_type, v, f"{path}.{k}") for k, v in value.items()}
    if not isinstance(value, list):
        raise PayloadError(f"{path}: expected a list, got {_name(value)}")
    if origin is tuple and not (len(args) == 2 and args[1] is Ellipsis):
        if len(args) != len(value):
            raise PayloadError(f"{path}: expected {len(args)} items, got {len(value)}")
        pairs = enumerate(zip(args, value, strict=True))
        return tuple(_decode(a, v, f"{path}[{i}]") for i, (a, v) in pairs)
    item_type = args[0] if args else object
    items = [_decode(item_type, v, f"{path}[{i}]") for i, v in enumerate(value)]
    return tuple(items) if origin is tuple else items


def _decode_class(tp: type, value: object, path: str) -> object:
    if dataclasses.is_dataclass(tp):
        return _decode_dataclass(tp, value, path)
    if issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            allowed = [m.value for m in tp]
            raise PayloadError(f"{path}: expected one of {allowed!r}, got {value!r}") from None
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if tp in (str, int, float, bool):
        if isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
            return value
        raise PayloadError(f"{path}: expected {tp.__name__}, got {_name(value)} {value!r}")
    if tp in (list, dict):
        return _decode_container(tp, (), value, path)
    raise PayloadError(f"{path}: unsupported field type {tp.__name__} in the payload schema")


def _decode_dataclass(tp: type, value: object, path: str) -> object:
    if not isinstance(value, dict):
        raise PayloadError(f"{path}: expected an object, got {_name(value)}")
    hints, fields = _schema(tp)
    unexpected = sorted(set(value) - set(fields))
    if unexpected:
        raise PayloadError(f"{path}: unexpected field {unexpected[0]!r}")
    kwargs: dict[str, object] = {}
    for name, field in fields.items():
        if name in value:
            kwargs[name] = _decode(hints[name], value[name], f"{path}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise PayloadError(f"{path}.{name}: required field is missing")
    try:
        return tp(**kwargs)
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"{path}: {exc}") from None


@functools.cache
def _schema(tp: type) -> tuple[dict[str, object], dict[str, dataclasses.Field[object]]]:
    """Type hints and init fields of a dataclass, resolved once per class."""
    fields = {f.name: f for f in dataclasses.fields(tp) if f.init}
    return typing.get_type_hints(tp), fields


def _name(value: object) -> str:
    return "null" if value is None else type(value).__name__
