"""Migration tooling: move work from a legacy implementation to a new one, a fraction at a time.

- ``flags``: ``RolloutFlag`` routes a deterministic fraction of keys to the new path
  (``Route.LEGACY`` / ``Route.NEW``) and says whether to shadow (``ShadowMode``).
- ``compare``: ``compare(legacy, new, Tolerance)`` lists every differing leaf as a ``Mismatch``.
- ``shadow``: ``ShadowRunner`` runs the routed path, shadows the other, records a ``ShadowRecord``.
- ``log``: ``ShadowLog`` stores records durably in SQLite, safe for several processes.
- ``report``: ``summarise(records)`` aggregates them into a ``ShadowReport``.

Standard library only; nothing here knows about any particular domain.
"""

from gaia.validator.migration.compare import Mismatch, Tolerance, compare
from gaia.validator.migration.flags import (
    FlagConfigError,
    RolloutFlag,
    Route,
    ShadowMode,
    env_variable,
)
from gaia.validator.migration.log import ShadowLog, ShadowLogError
from gaia.validator.migration.record import (
    COMPARISON_FAILURE_PATH,
    SHADOW_FAILURE_PATH,
    ShadowRecord,
)
from gaia.validator.migration.report import (
    PathSummary,
    RouteTiming,
    ShadowReport,
    normalise_path,
    summarise,
)
from gaia.validator.migration.shadow import RecordSink, ShadowRunner

__all__ = [
    "COMPARISON_FAILURE_PATH",
    "SHADOW_FAILURE_PATH",
    "FlagConfigError",
    "Mismatch",
    "PathSummary",
    "RecordSink",
    "RolloutFlag",
    "Route",
    "RouteTiming",
    "ShadowLog",
    "ShadowLogError",
    "ShadowMode",
    "ShadowRecord",
    "ShadowReport",
    "ShadowRunner",
    "Tolerance",
    "compare",
    "env_variable",
    "normalise_path",
    "summarise",
]
