"""Payloads of the weather job types: plain dataclasses, validated by the core payload decoder."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

StageName = Literal["day1", "era5"]


@dataclass(frozen=True)
class StagePayload:
    """Score one miner's forecast for one stage of one run (one job per run x miner x stage)."""

    run_dir: str
    run_id: str
    hotkey: str
    stage: StageName


@dataclass(frozen=True)
class AggregatePayload:
    """Re-derive a run's overall and per-run values and the 15-day window from stored parts."""

    run_dir: str
    run_id: str


def stage_key(run_id: str, hotkey: str, stage: StageName) -> str:
    """The dedupe key: exactly the unit of work a stage job does."""
    return f"weather:{run_id}:{hotkey}:{stage}"


def aggregate_key(run_id: str) -> str:
    return f"weather:{run_id}:aggregate"
