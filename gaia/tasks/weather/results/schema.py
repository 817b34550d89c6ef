"""The tables of the results store: versioned migrations and the column lists the SQL is built from.

Every table has a natural primary key, and every save is an upsert on it, so saving the same
results again leaves every table as it was. Columns named by ``{real}``, ``{time}``, ``{flag}`` and
``{bigint}`` take each backend's type (see ``dialect``). A pressure level is a positive integer;
``level = 0`` stands for "no level" (a surface variable), because a primary-key column cannot be
NULL. Migrations are append-only: never edit a shipped one, add a new version.
"""

from __future__ import annotations

from dataclasses import dataclass

SURFACE_LEVEL = 0
"""The stored ``level`` of a field or variable without a pressure level."""


@dataclass(frozen=True)
class Migration:
    version: int
    description: str
    sql: str
    """Statements separated by semicolons, with ``{real}``-style type tokens."""

    def statements(self, types: dict[str, str]) -> list[str]:
        text = self.sql.format(**types)
        return [statement.strip() for statement in text.split(";") if statement.strip()]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "runs, miners, field metrics, day-1, ERA5 variables and leads, failures, run and window "
        "scores",
        """
CREATE TABLE runs (
    run_id text PRIMARY KEY CHECK (run_id <> ''),
    init_time {time} NOT NULL
);
CREATE INDEX runs_by_init_time ON runs (init_time);
CREATE TABLE run_miners (
    run_id text NOT NULL, hotkey text NOT NULL, uid {bigint},
    PRIMARY KEY (run_id, hotkey)
);
CREATE TABLE field_metrics (
    run_id text NOT NULL, hotkey text NOT NULL,
    stage text NOT NULL CHECK (stage IN ('day1', 'era5')),
    lead_hours integer NOT NULL CHECK (lead_hours >= 0),
    variable text NOT NULL CHECK (variable <> ''),
    level integer NOT NULL CHECK (level >= 0),
    mse {real} NOT NULL, rmse {real} NOT NULL, mse_raw {real} NOT NULL,
    mse_reference {real} NOT NULL, skill {real} NOT NULL, acc {real} NOT NULL,
    bias {real} NOT NULL, mae_weighted {real} NOT NULL, bias_weighted {real} NOT NULL,
    clone_mse {real}, pattern_r {real}, valid_points {bigint} NOT NULL,
    PRIMARY KEY (run_id, hotkey, stage, lead_hours, variable, level)
);
CREATE TABLE era5_variables (
    run_id text NOT NULL, hotkey text NOT NULL, lead_hours integer NOT NULL,
    variable text NOT NULL CHECK (variable <> ''),
    position integer NOT NULL,
    rmse {real} NOT NULL, acc {real} NOT NULL, skill {real} NOT NULL,
    status text NOT NULL, reason text, levels text NOT NULL,
    PRIMARY KEY (run_id, hotkey, lead_hours, variable)
);
CREATE TABLE era5_results (
    run_id text NOT NULL, hotkey text NOT NULL,
    status text NOT NULL, average {real}, reason text,
    PRIMARY KEY (run_id, hotkey)
);
CREATE TABLE era5_leads (
    run_id text NOT NULL, hotkey text NOT NULL, lead_hours integer NOT NULL,
    value {real} NOT NULL, skill_term {real}, acc_term {real}, error_term {real},
    error_scale {real}, scored_variables text NOT NULL, failed_variables text NOT NULL,
    PRIMARY KEY (run_id, hotkey, lead_hours)
);
CREATE TABLE day1_results (
    run_id text NOT NULL, hotkey text NOT NULL,
    status text NOT NULL, score {real}, passed {flag} NOT NULL, clamped {flag} NOT NULL,
    reason text,
    PRIMARY KEY (run_id, hotkey)
);
CREATE TABLE day1_variables (
    run_id text NOT NULL, hotkey text NOT NULL,
    variable text NOT NULL CHECK (variable <> ''),
    level integer NOT NULL CHECK (level >= 0),
    lead_hours integer NOT NULL,
    position integer NOT NULL,
    status text NOT NULL, skill {real} NOT NULL, acc {real} NOT NULL,
    clone_distance {real} NOT NULL, clone_threshold {real}, penalty {real} NOT NULL,
    conversion text, reason text,
    PRIMARY KEY (run_id, hotkey, variable, level, lead_hours)
);
CREATE TABLE stage_failures (
    run_id text NOT NULL, hotkey text NOT NULL,
    stage text NOT NULL CHECK (stage IN ('day1', 'era5')),
    kind text NOT NULL, check_kind text, reason text NOT NULL,
    PRIMARY KEY (run_id, hotkey, stage)
);
CREATE TABLE overall_scores (
    run_id text NOT NULL, hotkey text NOT NULL,
    value {real} NOT NULL, day1_pass {flag} NOT NULL, era5_average {real}, reason text,
    PRIMARY KEY (run_id, hotkey)
);
CREATE TABLE run_values (
    run_id text NOT NULL, hotkey text NOT NULL,
    overall {real} NOT NULL, bonus {real} NOT NULL, value {real} NOT NULL,
    PRIMARY KEY (run_id, hotkey)
);
CREATE TABLE window_scores (
    computed_at {time} NOT NULL, hotkey text NOT NULL, score {real} NOT NULL,
    PRIMARY KEY (computed_at, hotkey)
)
""",
    ),
)
LATEST_VERSION = MIGRATIONS[-1].version


@dataclass(frozen=True)
class Table:
    """A table's primary key and other columns, in the order the codec lays rows out."""

    name: str
    key: tuple[str, ...]
    values: tuple[str, ...]

    @property
    def columns(self) -> tuple[str, ...]:
        return self.key + self.values

    def upsert(self, update: dict[str, str] | None = None) -> str:
        """INSERT of one row that updates every non-key column on a key conflict.

        ``update`` overrides the SET expression of some columns (e.g. to keep a stored value).
        """
        update = update or {}
        marks = ", ".join("?" for _ in self.columns)
        sets = ", ".join(f"{c} = {update.get(c, f'excluded.{c}')}" for c in self.values)
        return (
            f"INSERT INTO {self.name} ({', '.join(self.columns)}) VALUES ({marks}) "
            f"ON CONFLICT ({', '.join(self.key)}) DO UPDATE SET {sets}"
        )

    def select(self, where: tuple[str, ...], order: tuple[str, ...] = ()) -> str:
        """SELECT every column of the rows matching ``where`` (equality on each column)."""
        sql = f"SELECT {', '.join(self.columns)} FROM {self.name}"
        if where:
            sql += " WHERE " + " AND ".join(f"{c} = ?" for c in where)
        if order:
            sql += " ORDER BY " + ", ".join(order)
        return sql

    def delete(self, where: tuple[str, ...]) -> str:
        return f"DELETE FROM {self.name} WHERE " + " AND ".join(f"{c} = ?" for c in where)


MINER = ("run_id", "hotkey")

RUNS = Table("runs", ("run_id",), ("init_time",))
RUN_MINERS = Table("run_miners", MINER, ("uid",))
FIELD_METRICS = Table(
    "field_metrics",
    (*MINER, "stage", "lead_hours", "variable", "level"),
    ("mse", "rmse", "mse_raw", "mse_reference", "skill", "acc", "bias", "mae_weighted",
     "bias_weighted", "clone_mse", "pattern_r", "valid_points"),
)
ERA5_VARIABLES = Table(
    "era5_variables",
    (*MINER, "lead_hours", "variable"),
    ("position", "rmse", "acc", "skill", "status", "reason", "levels"),
)
ERA5_RESULTS = Table("era5_results", MINER, ("status", "average", "reason"))
ERA5_LEADS = Table(
    "era5_leads",
    (*MINER, "lead_hours"),
    ("value", "skill_term", "acc_term", "error_term", "error_scale", "scored_variables",
     "failed_variables"),
)
DAY1_RESULTS = Table("day1_results", MINER, ("status", "score", "passed", "clamped", "reason"))
DAY1_VARIABLES = Table(
    "day1_variables",
    (*MINER, "variable", "level", "lead_hours"),
    ("position", "status", "skill", "acc", "clone_distance", "clone_threshold", "penalty",
     "conversion", "reason"),
)
STAGE_FAILURES = Table("stage_failures", (*MINER, "stage"), ("kind", "check_kind", "reason"))
OVERALL_SCORES = Table(
    "overall_scores", MINER, ("value", "day1_pass", "era5_average", "reason")
)
RUN_VALUES = Table("run_values", MINER, ("overall", "bonus", "value"))
WINDOW_SCORES = Table("window_scores", ("computed_at", "hotkey"), ("score",))

TABLES: tuple[Table, ...] = (
    RUNS, RUN_MINERS, FIELD_METRICS, ERA5_VARIABLES, ERA5_RESULTS, ERA5_LEADS, DAY1_RESULTS,
    DAY1_VARIABLES, STAGE_FAILURES, OVERALL_SCORES, RUN_VALUES, WINDOW_SCORES,
)
"""Every table of the latest schema (``schema_migrations`` aside)."""
