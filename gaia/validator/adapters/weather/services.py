"""What the weather job handlers need, built once per worker process and passed explicitly."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from gaia.tasks.weather.data.loader import LoaderConfig
from gaia.tasks.weather.results import ResultsStore
from gaia.tasks.weather.scoring.config import AggregateConfig, Era5Config, LevelConfig
from gaia.validator.adapters.weather.scoring_paths import ScoringPaths
from gaia.validator.core.queue import Queue


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class WeatherServices:
    queue: Queue
    """Where follow-up aggregation jobs go."""
    results: ResultsStore
    paths: ScoringPaths
    loader_config: LoaderConfig = field(default_factory=LoaderConfig)
    level_config: LevelConfig = field(default_factory=LevelConfig)
    era5_config: Era5Config = field(default_factory=Era5Config)
    aggregate_config: AggregateConfig = field(default_factory=AggregateConfig)
    clock: Callable[[], datetime] = utc_now
    aggregation_window: float = 2.0
    """Seconds of landings one aggregation job covers (see planning.trigger_aggregation)."""
