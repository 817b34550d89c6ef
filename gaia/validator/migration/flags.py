"""Rollout flags: send a deterministic fraction of work to the new code path.

A unit of work is identified by its key parts (for weather scoring: run id and miner hotkey). The
flag hashes its name, its salt and the key parts with SHA-256 and maps the digest to a number
uniform in [0, 1); the work goes to the new path when that number is below the flag's fraction.
The same key always takes the same path, and raising the fraction only adds keys to the new path
(a key on the new path at 10 % stays there at 25 %). Changing the salt reshuffles the assignment.

A flag is configured by a short string, e.g. ``"new=0.25,shadow=on"`` (see ``RolloutFlag.parse``),
usually read from the environment variable ``GAIA_ROLLOUT_<NAME>`` (see ``RolloutFlag.from_env``).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum

_UNIT_BITS = 53  # a double holds every multiple of 2**-53 in [0, 1) exactly, so the top stays < 1
_ENV_PREFIX = "GAIA_ROLLOUT_"


class Route(Enum):
    """Which implementation handles a unit of work."""

    LEGACY = "legacy"
    NEW = "new"

    @property
    def other(self) -> Route:
        return Route.NEW if self is Route.LEGACY else Route.LEGACY


class ShadowMode(Enum):
    """OFF runs only the routed path; SHADOW runs the other path as well and compares outputs."""

    OFF = "off"
    SHADOW = "shadow"


class FlagConfigError(ValueError):
    """A rollout flag's configuration string or values are invalid."""


@dataclass(frozen=True)
class RolloutFlag:
    """Route a deterministic ``fraction`` of keys to the new path; optionally shadow the other."""

    name: str
    fraction: float
    salt: str = ""
    shadow: ShadowMode = ShadowMode.OFF

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise FlagConfigError(
                f"rollout flag name must be a non-empty string, got {self.name!r}"
            )
        fraction = self.fraction
        if isinstance(fraction, bool) or not isinstance(fraction, int | float):
            raise FlagConfigError(
                f"rollout flag {self.name!r}: fraction must be a number in [0, 1], "
                f"got {type(fraction).__name__} {fraction!r}"
            )
        if math.isnan(fraction) or not 0.0 <= fraction <= 1.0:
            raise FlagConfigError(
                f"rollout flag {self.name!r}: fraction must be in [0, 1], got {fraction!r}"
            )
        if not isinstance(self.salt, str):
            raise FlagConfigError(
                f"rollout flag {self.name!r}: salt must be a string, got {type(self.salt).__name__}"
            )
        if not isinstance(self.shadow, ShadowMode):
            raise FlagConfigError(
                f"rollout flag {self.name!r}: shadow must be a ShadowMode, got {self.shadow!r}"
            )
        object.__setattr__(self, "fraction", float(fraction))

    def position(self, *key_parts: str) -> float:
        """The key's place in [0, 1): uniform over keys, fixed for a given name and salt."""
        if not key_parts:
            raise ValueError(f"rollout flag {self.name!r}: at least one key part is required")
        for index, part in enumerate(key_parts):
            if not isinstance(part, str):
                raise TypeError(
                    f"rollout flag {self.name!r}: key part {index} must be a string, "
                    f"got {type(part).__name__} {part!r}"
                )
        # A JSON array is an unambiguous encoding: ("a,b", "c") and ("a", "b,c") differ.
        material = json.dumps([self.name, self.salt, *key_parts], ensure_ascii=False)
        digest = hashlib.sha256(material.encode("utf-8")).digest()
        return (int.from_bytes(digest[:8], "big") >> (64 - _UNIT_BITS)) / float(1 << _UNIT_BITS)

    def routes_to_new(self, *key_parts: str) -> bool:
        """True when this key goes to the new path (always False at 0, always True at 1)."""
        position = self.position(*key_parts)  # validates the key even at 0 and 1
        if self.fraction <= 0.0:
            return False
        if self.fraction >= 1.0:
            return True
        return position < self.fraction

    def route(self, *key_parts: str) -> Route:
        return Route.NEW if self.routes_to_new(*key_parts) else Route.LEGACY

    @classmethod
    def parse(cls, name: str, text: str) -> RolloutFlag:
        """Build a flag from ``"new=0.25,shadow=on,salt=abc"``.

        Keys: ``new`` (a fraction in [0, 1] such as ``0.25``, or a percentage such as ``25%``),
        ``shadow`` (``on`` or ``off``) and ``salt`` (any text without commas). Every key is
        optional and may appear once; an empty string means everything on the legacy path.
        """
        settings = _parse_settings(name, text)
        fraction = _parse_fraction(name, settings.get("new", "0"))
        shadow = _parse_shadow(name, settings.get("shadow", "off"))
        return cls(name=name, fraction=fraction, salt=settings.get("salt", ""), shadow=shadow)

    @classmethod
    def from_env(
        cls, name: str, variable: str | None = None, environ: Mapping[str, str] | None = None
    ) -> RolloutFlag:
        """Read the flag from ``variable`` (default ``env_variable(name)``); unset means 0 %."""
        variable = variable or env_variable(name)
        environment = os.environ if environ is None else environ
        text = environment.get(variable, "")
        try:
            return cls.parse(name, text)
        except FlagConfigError as exc:
            raise FlagConfigError(f"environment variable {variable}: {exc}") from None

    def describe(self) -> str:
        """The flag as a configuration string that ``parse`` reads back to an equal flag."""
        parts = [
            f"new={self.fraction!r}",
            f"shadow={'on' if self.shadow is ShadowMode.SHADOW else 'off'}",
        ]
        if self.salt:
            parts.append(f"salt={self.salt}")
        return ",".join(parts)


def env_variable(name: str) -> str:
    """``GAIA_ROLLOUT_`` followed by the flag name in upper case, non-alphanumerics as ``_``."""
    return _ENV_PREFIX + re.sub(r"[^A-Za-z0-9]", "_", name).upper()


_KEYS = ("new", "shadow", "salt")
_SHADOW_WORDS = {"on": ShadowMode.SHADOW, "off": ShadowMode.OFF}


def _parse_settings(name: str, text: str) -> dict[str, str]:
    if not isinstance(text, str):
        raise FlagConfigError(f"rollout flag {name!r}: configuration must be a string")
    settings: dict[str, str] = {}
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        key, separator, value = item.partition("=")
        key, value = key.strip().lower(), value.strip()
        if not separator:
            raise FlagConfigError(
                f"rollout flag {name!r}: expected key=value, got {item!r} in {text!r}"
            )
        if key not in _KEYS:
            raise FlagConfigError(
                f"rollout flag {name!r}: unknown key {key!r} in {text!r} "
                f"(known keys: {', '.join(_KEYS)})"
            )
        if key in settings:
            raise FlagConfigError(f"rollout flag {name!r}: key {key!r} given twice in {text!r}")
        settings[key] = value
    return settings


def _parse_fraction(name: str, value: str) -> float:
    percent = value.endswith("%")
    number_text = value[:-1].strip() if percent else value
    try:
        number = float(number_text)
    except ValueError:
        raise FlagConfigError(
            f"rollout flag {name!r}: new={value!r} is not a number "
            "(use a fraction such as 0.25 or a percentage such as 25%)"
        ) from None
    fraction = number / 100.0 if percent else number
    if not math.isfinite(fraction) or not 0.0 <= fraction <= 1.0:
        raise FlagConfigError(
            f"rollout flag {name!r}: new={value!r} is outside [0, 1] (or 0% to 100%)"
        )
    return fraction


def _parse_shadow(name: str, value: str) -> ShadowMode:
    try:
        return _SHADOW_WORDS[value.lower()]
    except KeyError:
        raise FlagConfigError(
            f"rollout flag {name!r}: shadow={value!r} must be 'on' or 'off'"
        ) from None
