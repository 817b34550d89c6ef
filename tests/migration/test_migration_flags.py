"""Rollout flags: deterministic routing, the fraction honoured over many keys, exact 0 and 1,
nested rollouts, and clear errors for every bad configuration."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest

from gaia.validator.migration import (
    FlagConfigError,
    RolloutFlag,
    Route,
    ShadowMode,
    env_variable,
)

KEYS = [(f"run-{run}", f"5Hotkey{miner:03d}") for run in range(100) for miner in range(100)]


def new_share(flag: RolloutFlag) -> float:
    return sum(flag.routes_to_new(*key) for key in KEYS) / len(KEYS)


def test_the_same_key_always_takes_the_same_route() -> None:
    first = RolloutFlag("weather_scoring", 0.3)
    again = RolloutFlag("weather_scoring", 0.3)
    assert [first.route(*k) for k in KEYS] == [again.route(*k) for k in KEYS]


def test_positions_are_pinned_so_a_code_change_cannot_silently_reshuffle_a_rollout() -> None:
    flag = RolloutFlag("weather_scoring", 0.25)
    assert flag.position("run-1", "hk-a") == pytest.approx(0.16008440915542144, abs=1e-15)
    assert flag.position("run-1", "hk-b") == pytest.approx(0.9016026748262673, abs=1e-15)
    assert flag.route("run-1", "hk-a") is Route.NEW
    assert flag.route("run-1", "hk-b") is Route.LEGACY


def test_routing_does_not_depend_on_the_interpreters_hash_seed() -> None:
    code = (
        "from gaia.validator.migration import RolloutFlag;"
        "print(RolloutFlag('weather_scoring', 0.5).position('run-7', 'miner-3'))"
    )
    outputs = {
        subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            check=True,
            env={"PYTHONHASHSEED": seed},
        ).stdout
        for seed in ("1", "2")
    }
    assert len(outputs) == 1


@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.25, 0.5, 0.9])
def test_the_share_routed_to_new_matches_the_fraction_over_10000_keys(fraction: float) -> None:
    # Each key lands on the new path with probability `fraction`, independently (SHA-256 output is
    # indistinguishable from uniform), so the count is Binomial(n, fraction) with standard error
    # sqrt(f (1 - f) / n) <= 0.005 for n = 10,000. A 5-sigma bound is exceeded by chance with
    # probability below 6e-7; the keys are fixed, so this test is also fully deterministic.
    bound = 5 * math.sqrt(fraction * (1 - fraction) / len(KEYS))
    assert abs(new_share(RolloutFlag("weather_scoring", fraction)) - fraction) <= bound


def test_positions_are_uniform_over_twenty_bins() -> None:
    flag = RolloutFlag("weather_scoring", 0.5)
    counts = [0] * 20
    for key in KEYS:
        counts[int(flag.position(*key) * 20)] += 1
    expected = len(KEYS) / 20
    chi_square = sum((count - expected) ** 2 / expected for count in counts)
    # 19 degrees of freedom: P(chi2 > 60) is about 3e-6 for a uniform hash.
    assert chi_square < 60


def test_fractions_zero_and_one_are_exact() -> None:
    nobody, everybody = RolloutFlag("f", 0.0), RolloutFlag("f", 1.0)
    assert not any(nobody.routes_to_new(*key) for key in KEYS)
    assert all(everybody.routes_to_new(*key) for key in KEYS)
    assert all(0.0 <= everybody.position(*key) < 1.0 for key in KEYS)
    assert RolloutFlag("f", 1).fraction == 1.0


def test_raising_the_fraction_only_adds_keys_to_the_new_path() -> None:
    at_10 = {key for key in KEYS if RolloutFlag("f", 0.10).routes_to_new(*key)}
    at_25 = {key for key in KEYS if RolloutFlag("f", 0.25).routes_to_new(*key)}
    assert at_10 < at_25


def test_salt_and_name_reshuffle_the_assignment() -> None:
    plain = {key for key in KEYS if RolloutFlag("f", 0.5).routes_to_new(*key)}
    salted = {key for key in KEYS if RolloutFlag("f", 0.5, salt="2024-06").routes_to_new(*key)}
    renamed = {key for key in KEYS if RolloutFlag("g", 0.5).routes_to_new(*key)}
    # Independent halves overlap on a quarter of the keys (5-sigma bound: 0.0217).
    for other in (salted, renamed):
        assert abs(len(plain & other) / len(KEYS) - 0.25) <= 5 * math.sqrt(0.25 * 0.75 / len(KEYS))


def test_key_parts_are_encoded_unambiguously() -> None:
    flag = RolloutFlag("f", 0.5)
    assert flag.position("a,b", "c") != flag.position("a", "b,c")
    assert flag.position("ab", "c") != flag.position("a", "bc")


def test_route_and_other() -> None:
    assert RolloutFlag("f", 1.0).route("k") is Route.NEW
    assert RolloutFlag("f", 0.0).route("k") is Route.LEGACY
    assert Route.NEW.other is Route.LEGACY and Route.LEGACY.other is Route.NEW


@pytest.mark.parametrize(
    ("fraction", "message"),
    [
        (-0.1, "must be in [0, 1]"),
        (1.1, "must be in [0, 1]"),
        (float("nan"), "must be in [0, 1]"),
        ("0.5", "must be a number"),
        (True, "must be a number"),
    ],
)
def test_bad_fractions_are_refused(fraction: object, message: str) -> None:
    with pytest.raises(FlagConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        RolloutFlag("f", fraction)  # type: ignore[arg-type]


def test_bad_names_salts_and_keys_are_refused() -> None:
    with pytest.raises(FlagConfigError, match="name must be a non-empty string"):
        RolloutFlag(" ", 0.5)
    with pytest.raises(FlagConfigError, match="salt must be a string"):
        RolloutFlag("f", 0.5, salt=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least one key part"):
        RolloutFlag("f", 0.5).routes_to_new()
    with pytest.raises(TypeError, match="key part 1 must be a string, got int 7"):
        RolloutFlag("f", 0.0).routes_to_new("run", 7)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "fraction", "shadow", "salt"),
    [
        ("new=0.25,shadow=on", 0.25, ShadowMode.SHADOW, ""),
        ("new=25%", 0.25, ShadowMode.OFF, ""),
        (" NEW = 0.5 , Shadow = OFF ", 0.5, ShadowMode.OFF, ""),
        ("shadow=on", 0.0, ShadowMode.SHADOW, ""),
        ("new=1,salt=june=2", 1.0, ShadowMode.OFF, "june=2"),
        ("", 0.0, ShadowMode.OFF, ""),
        ("new=0,", 0.0, ShadowMode.OFF, ""),
    ],
)
def test_parse(text: str, fraction: float, shadow: ShadowMode, salt: str) -> None:
    flag = RolloutFlag.parse("weather", text)
    assert (flag.name, flag.fraction, flag.shadow, flag.salt) == ("weather", fraction, shadow, salt)
    assert RolloutFlag.parse("weather", flag.describe()) == flag


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("new=abc", "new='abc' is not a number"),
        ("new=1.5", "new='1.5' is outside"),
        ("new=150%", "new='150%' is outside"),
        ("new=nan", "new='nan' is outside"),
        ("new=inf", "new='inf' is outside"),
        ("shadow=maybe", "shadow='maybe' must be 'on' or 'off'"),
        ("speed=1", "unknown key 'speed'"),
        ("new=0.1,new=0.2", "key 'new' given twice"),
        ("new", "expected key=value, got 'new'"),
    ],
)
def test_parse_errors_name_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(FlagConfigError) as caught:
        RolloutFlag.parse("weather", text)
    assert message in str(caught.value)
    assert "'weather'" in str(caught.value)


def test_from_env() -> None:
    assert env_variable("weather.scoring-v") == "GAIA_ROLLOUT_WEATHER_SCORING_V"
    flag = RolloutFlag.from_env(
        "weather_scoring", environ={"GAIA_ROLLOUT_WEATHER_SCORING": "new=0.1,shadow=on"}
    )
    assert (flag.fraction, flag.shadow) == (0.1, ShadowMode.SHADOW)
    unset = RolloutFlag.from_env("weather_scoring", environ={})
    assert (unset.fraction, unset.shadow) == (0.0, ShadowMode.OFF)
    custom = RolloutFlag.from_env("w", variable="MY_FLAG", environ={"MY_FLAG": "new=1"})
    assert custom.fraction == 1.0
    with pytest.raises(FlagConfigError, match=r"variable GAIA_ROLLOUT_W: .*not a number"):
        RolloutFlag.from_env("w", environ={"GAIA_ROLLOUT_W": "new=lots"})


def test_from_env_reads_the_process_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GAIA_ROLLOUT_SCORING", "new=0.75")
    assert RolloutFlag.from_env("scoring").fraction == 0.75
