"""ResultsStore: durable, idempotent storage of weather scores, over SQLite or PostgreSQL.

Every save is keyed by its natural key (run, miner, stage, lead, variable, level, ...) and is an
upsert, so saving the same results twice leaves every table unchanged. A save that stands for a
whole set (a lead's variables, a miner's day-1 variables or ERA5 leads, a run's values, one window)
replaces that set: rows the new set no longer has are deleted in the same transaction. Writes of
one miner (or of one run's aggregates) are serialised by a lock, so concurrent savers never see or
leave half a set. Times must be timezone-aware and come back in UTC.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING, TypeVar

from gaia.tasks.weather.fields import FieldMetrics
from gaia.tasks.weather.results import codec
from gaia.tasks.weather.results.database import Database, Query, Statement
from gaia.tasks.weather.results.dialect import (
    Row,
    SqlValue,
    aware,
    read_int,
    read_real,
    read_time,
)
from gaia.tasks.weather.results.records import (
    STAGES,
    MinerRow,
    ResultsError,
    RunConflict,
    StageFailure,
    StageName,
    WindowScores,
)
from gaia.tasks.weather.results.report import MinerResults, miner_table
from gaia.tasks.weather.results.schema import (
    DAY1_RESULTS,
    DAY1_VARIABLES,
    ERA5_LEADS,
    ERA5_RESULTS,
    ERA5_VARIABLES,
    FIELD_METRICS,
    MINER,
    OVERALL_SCORES,
    RUN_MINERS,
    RUN_VALUES,
    STAGE_FAILURES,
    WINDOW_SCORES,
    Table,
)
from gaia.tasks.weather.scoring.aggregate import OverallScore, RunRecord, RunValue
from gaia.tasks.weather.scoring.era5 import Era5Result
from gaia.tasks.weather.scoring.levels import VariableScore

if TYPE_CHECKING:
    from gaia.tasks.weather.scoring.day1 import Day1Result

_T = TypeVar("_T")
_FIELD_ORDER = ("stage", "lead_hours", "variable", "level")
_INSERT_RUN = (
    "INSERT INTO runs (run_id, init_time) VALUES (?, ?) ON CONFLICT (run_id) DO UPDATE SET "
    "init_time = CASE WHEN runs.init_time = excluded.init_time THEN runs.init_time END"
)
"""A run saved again with another init time sets NULL, which NOT NULL refuses: the whole save
fails atomically even when two savers race past the check before it."""
_RUN_RECORDS = (
    "SELECT r.run_id, r.init_time, v.hotkey, v.value FROM runs r "
    "JOIN run_values v ON v.run_id = r.run_id WHERE r.init_time >= ?"
)


def _key(value: object, what: str) -> str:
    text = codec.name(value, what)
    if "\x00" in text:
        raise ValueError(f"{what} must not contain a NUL character: {text!r}")
    return text


class ResultsStore:
    """Weather scores in one results database; open with ``open_results(url)``."""

    def __init__(self, database: Database) -> None:
        self._db = database
        self._d = database.dialect

    @property
    def description(self) -> str:
        """Where the results live (password masked)."""
        return self._db.description

    # ---- runs -----------------------------------------------------------------------------

    async def save_run(
        self, run_id: str, init_time: datetime, miners: Mapping[str, int | None] | None = None
    ) -> None:
        """Record a run's initialisation time and its miners (hotkey -> uid, None if unknown).

        A known uid is kept when the miner is saved again with None. Raises RunConflict if the
        run is already stored with another initialisation time.
        """
        run_id = _key(run_id, "run_id")
        moment = aware(init_time)
        rows = [(run_id, _key(hk, "hotkey"), None if uid is None else codec.integer(uid, "uid"))
                for hk, uid in sorted((miners or {}).items())]
        await self._check_init_time(run_id, moment)
        try:
            await self._db.write(f"run:{run_id}", [
                Statement(_INSERT_RUN, [(run_id, self._d.time(moment))]),
                Statement(RUN_MINERS.upsert({"uid": "COALESCE(excluded.uid, run_miners.uid)"}),
                          rows),
            ])
        except ResultsError:
            await self._check_init_time(run_id, moment)  # a racing save with another time
            raise

    async def _check_init_time(self, run_id: str, moment: datetime) -> None:
        stored = await self.init_time(run_id)
        if stored is not None and stored != moment:
            raise RunConflict(
                f"run {run_id!r} is stored with init time {stored.isoformat()}, "
                f"not {moment.isoformat()}"
            )

    async def init_time(self, run_id: str) -> datetime | None:
        rows = await self._one(Query("SELECT init_time FROM runs WHERE run_id = ?", (run_id,)))
        return read_time(rows[0][0]) if rows else None

    async def miners(self, run_id: str) -> dict[str, int | None]:
        """The miners saved with the run, hotkey -> uid."""
        rows = await self._one(Query(RUN_MINERS.select(("run_id",), ("hotkey",)), (run_id,)))
        return {str(hotkey): None if uid is None else read_int(uid) for _, hotkey, uid in rows}

    # ---- per-field components -------------------------------------------------------------

    async def save_fields(
        self, run_id: str, hotkey: str, stage: StageName, fields: Sequence[FieldMetrics]
    ) -> None:
        """Upsert per-field metrics, keyed (run, miner, stage, lead, variable, level)."""
        run_id, hotkey = self._miner(run_id, hotkey)
        rows = self._field_rows(run_id, hotkey, codec.stage_name(stage), fields)
        await self._db.write(self._lock(run_id, hotkey), [Statement(FIELD_METRICS.upsert(), rows)])

    async def fields(
        self, run_id: str, hotkey: str, stage: StageName | None = None
    ) -> list[FieldMetrics]:
        """Stored field metrics by stage, lead, variable and level (surface first)."""
        if stage is None:
            query = Query(FIELD_METRICS.select(MINER, _FIELD_ORDER), (run_id, hotkey))
        else:
            where = (*MINER, "stage")
            query = Query(FIELD_METRICS.select(where, _FIELD_ORDER),
                          (run_id, hotkey, codec.stage_name(stage)))
        rows = await self._one(query)
        return codec.decode_rows(FIELD_METRICS, rows, codec.decode_field)

    def _field_rows(
        self, run_id: str, hotkey: str, stage: StageName, fields: Sequence[FieldMetrics]
    ) -> list[Row]:
        _unique([codec.field_key(m) for m in fields], "field (lead, variable, level)")
        rows = [codec.encode_field(self._d, run_id, hotkey, stage, m) for m in fields]
        return sorted(rows, key=lambda row: (row[3], row[4], row[5]))

    # ---- ERA5 -----------------------------------------------------------------------------

    async def save_era5_lead(
        self,
        run_id: str,
        hotkey: str,
        lead_hours: int,
        variables: Sequence[VariableScore],
        fields: Sequence[FieldMetrics] | None = None,
    ) -> None:
        """Store one scored ERA5 lead: its variable scores (replacing the lead's stored set)
        and, when given, its field metrics (replacing the lead's stored fields)."""
        run_id, hotkey = self._miner(run_id, hotkey)
        lead = codec.integer(lead_hours, "lead_hours", 0)
        if not variables:
            raise ValueError(f"lead {lead} h: no variable scores to save")
        for item in [*variables, *(fields or ())]:
            if getattr(item, "lead_hours", None) != lead:
                raise ValueError(
                    f"{type(item).__name__} {getattr(item, 'variable', '?')} is for lead "
                    f"{getattr(item, 'lead_hours', '?')} h, not {lead} h"
                )
        _unique([v.variable for v in variables], f"lead {lead} h variable")
        scope = (run_id, hotkey, lead)
        statements = [
            Statement(ERA5_VARIABLES.delete((*MINER, "lead_hours")), [scope]),
            Statement(ERA5_VARIABLES.upsert(), [
                codec.encode_variable(self._d, run_id, hotkey, i, v)
                for i, v in enumerate(variables)
            ]),
        ]
        if fields is not None:
            statements += [
                Statement(FIELD_METRICS.delete((*MINER, "stage", "lead_hours")),
                          [(run_id, hotkey, "era5", lead)]),
                Statement(FIELD_METRICS.upsert(),
                          self._field_rows(run_id, hotkey, "era5", fields)),
            ]
        await self._db.write(self._lock(run_id, hotkey), statements)

    async def era5_variables(self, run_id: str, hotkey: str) -> dict[int, list[VariableScore]]:
        """The stored variable scores by lead (leads ascending, variables in saved order)."""
        query = ERA5_VARIABLES.select(MINER, ("lead_hours", "position"))
        rows = await self._one(Query(query, (run_id, hotkey)))
        leads: dict[int, list[VariableScore]] = {}
        for score in codec.decode_rows(ERA5_VARIABLES, rows, codec.decode_variable):
            leads.setdefault(score.lead_hours, []).append(score)
        return leads

    async def scored_leads(self, run_id: str, hotkey: str) -> set[int]:
        """The ERA5 leads with stored variable scores."""
        rows = await self._one(Query(
            "SELECT DISTINCT lead_hours FROM era5_variables WHERE run_id = ? AND hotkey = ?",
            (run_id, hotkey),
        ))
        return {read_int(row[0]) for row in rows}

    async def save_era5(self, run_id: str, hotkey: str, result: Era5Result) -> None:
        """Store the miner's ERA5 result and its lead scores (replacing the stored leads)."""
        run_id, hotkey = self._miner(run_id, hotkey)
        row = codec.encode_era5(self._d, run_id, hotkey, result)
        leads = [codec.encode_lead(self._d, run_id, hotkey, lead) for lead in result.leads]
        hours = [lead.lead_hours for lead in result.leads]
        if hours != sorted(set(hours)):
            raise ValueError(f"ERA5 result leads must be strictly increasing, got {hours}")
        await self._db.write(self._lock(run_id, hotkey), [
            Statement(ERA5_RESULTS.upsert(), [row]),
            Statement(ERA5_LEADS.delete(MINER), [(run_id, hotkey)]),
            Statement(ERA5_LEADS.upsert(), leads),
        ])

    async def era5(self, run_id: str, hotkey: str) -> Era5Result | None:
        result_rows, lead_rows = await self._db.read([
            Query(ERA5_RESULTS.select(MINER), (run_id, hotkey)),
            Query(ERA5_LEADS.select(MINER, ("lead_hours",)), (run_id, hotkey)),
        ])
        if not result_rows:
            return None
        leads = tuple(codec.decode_rows(ERA5_LEADS, lead_rows, codec.decode_lead))
        return _decode(ERA5_RESULTS, result_rows[0], lambda r: codec.decode_era5(r, leads))

    # ---- day-1 ----------------------------------------------------------------------------

    async def save_day1(
        self,
        run_id: str,
        hotkey: str,
        result: Day1Result,
        fields: Sequence[FieldMetrics] | None = None,
    ) -> None:
        """Store the miner's day-1 result with its variables (replacing the stored ones) and,
        when given, its field metrics (replacing the stored day-1 fields)."""
        run_id, hotkey = self._miner(run_id, hotkey)
        row = codec.encode_day1(self._d, run_id, hotkey, result)
        _unique([codec.day1_variable_key(v) for v in result.variables], "day-1 variable")
        variables = [codec.encode_day1_variable(self._d, run_id, hotkey, i, v)
                     for i, v in enumerate(result.variables)]
        statements = [
            Statement(DAY1_RESULTS.upsert(), [row]),
            Statement(DAY1_VARIABLES.delete(MINER), [(run_id, hotkey)]),
            Statement(DAY1_VARIABLES.upsert(), variables),
        ]
        if fields is not None:
            statements += [
                Statement(FIELD_METRICS.delete((*MINER, "stage")), [(run_id, hotkey, "day1")]),
                Statement(FIELD_METRICS.upsert(),
                          self._field_rows(run_id, hotkey, "day1", fields)),
            ]
        await self._db.write(self._lock(run_id, hotkey), statements)

    async def day1(self, run_id: str, hotkey: str) -> Day1Result | None:
        result_rows, variable_rows = await self._db.read([
            Query(DAY1_RESULTS.select(MINER), (run_id, hotkey)),
            Query(DAY1_VARIABLES.select(MINER, ("position",)), (run_id, hotkey)),
        ])
        if not result_rows:
            return None
        variables = tuple(
            codec.decode_rows(DAY1_VARIABLES, variable_rows, codec.decode_day1_variable)
        )
        return _decode(DAY1_RESULTS, result_rows[0], lambda r: codec.decode_day1(r, variables))

    # ---- failures -------------------------------------------------------------------------

    async def save_failure(self, run_id: str, hotkey: str, failure: StageFailure) -> None:
        """Record why a stage of a miner failed (replacing that stage's stored failure)."""
        run_id, hotkey = self._miner(run_id, hotkey)
        row = codec.encode_failure(run_id, hotkey, failure)
        await self._db.write(self._lock(run_id, hotkey),
                             [Statement(STAGE_FAILURES.upsert(), [row])])

    async def clear_failure(self, run_id: str, hotkey: str, stage: StageName) -> None:
        """Forget a stage's failure (e.g. when a retry scored it). No failure: no change."""
        run_id, hotkey = self._miner(run_id, hotkey)
        scope = (run_id, hotkey, codec.stage_name(stage))
        await self._db.write(self._lock(run_id, hotkey),
                             [Statement(STAGE_FAILURES.delete((*MINER, "stage")), [scope])])

    async def failures(self, run_id: str, hotkey: str) -> list[StageFailure]:
        """The miner's stage failures, day-1 first."""
        rows = await self._one(Query(STAGE_FAILURES.select(MINER), (run_id, hotkey)))
        failures = codec.decode_rows(STAGE_FAILURES, rows, codec.decode_failure)
        return sorted(failures, key=lambda f: STAGES.index(f.stage))

    # ---- per-run aggregates ---------------------------------------------------------------

    async def save_run_scores(
        self, run_id: str, overall: Mapping[str, OverallScore], values: Mapping[str, RunValue]
    ) -> None:
        """Replace the run's overall scores and per-run values (one entry per miner in both)."""
        run_id = _key(run_id, "run_id")
        if set(overall) != set(values):
            raise ValueError(
                f"run {run_id}: overall and run values name different miners: "
                f"{sorted(set(overall) ^ set(values))}"
            )
        hotkeys = sorted(_key(hotkey, "hotkey") for hotkey in overall)
        await self._db.write(f"run:{run_id}", [
            Statement(OVERALL_SCORES.delete(("run_id",)), [(run_id,)]),
            Statement(RUN_VALUES.delete(("run_id",)), [(run_id,)]),
            Statement(OVERALL_SCORES.upsert(), [
                codec.encode_overall(self._d, run_id, hk, overall[hk]) for hk in hotkeys
            ]),
            Statement(RUN_VALUES.upsert(), [
                codec.encode_run_value(self._d, run_id, hk, values[hk]) for hk in hotkeys
            ]),
        ])

    async def overall(self, run_id: str) -> dict[str, OverallScore]:
        rows = await self._one(Query(OVERALL_SCORES.select(("run_id",), ("hotkey",)), (run_id,)))
        return {str(row[1]): score for row, score in zip(
            rows, codec.decode_rows(OVERALL_SCORES, rows, codec.decode_overall), strict=True)}

    async def run_values(self, run_id: str) -> dict[str, RunValue]:
        rows = await self._one(Query(RUN_VALUES.select(("run_id",), ("hotkey",)), (run_id,)))
        return {str(row[1]): value for row, value in zip(
            rows, codec.decode_rows(RUN_VALUES, rows, codec.decode_run_value), strict=True)}

    async def run_records(
        self, since: datetime, until: datetime | None = None
    ) -> list[RunRecord]:
        """Runs initialised in [since, until] that have stored run values, oldest first.

        A run without stored values yet is left out rather than counted as all zeros; a miner
        absent from a run's values is absent from its record (the window counts it 0).
        """
        sql, parameters = _RUN_RECORDS, [self._d.time(since)]
        if until is not None:
            sql += " AND r.init_time <= ?"
            parameters.append(self._d.time(until))
        sql += " ORDER BY r.init_time, r.run_id, v.hotkey"
        rows = await self._one(Query(sql, tuple(parameters)))
        runs: dict[str, tuple[datetime, dict[str, float]]] = {}
        for run_id, init_time, hotkey, value in rows:
            _, values = runs.setdefault(str(run_id), (read_time(init_time), {}))
            values[str(hotkey)] = read_real(value)
        return [RunRecord(run_id, init, values) for run_id, (init, values) in runs.items()]

    # ---- window ---------------------------------------------------------------------------

    async def save_window_scores(self, computed_at: datetime, scores: Mapping[str, float]) -> None:
        """Store the window scores computed at ``computed_at`` (replacing any stored then)."""
        moment = self._d.time(aware(computed_at))
        rows = [(moment, _key(hk, "hotkey"), self._d.real(codec.number(s, f"window score {hk}")))
                for hk, s in sorted(scores.items())]
        await self._db.write("window", [
            Statement(WINDOW_SCORES.delete(("computed_at",)), [(moment,)]),
            Statement(WINDOW_SCORES.upsert(), rows),
        ])

    async def window_scores(self, computed_at: datetime) -> dict[str, float]:
        query = WINDOW_SCORES.select(("computed_at",), ("hotkey",))
        rows = await self._one(Query(query, (self._d.time(aware(computed_at)),)))
        return _window(rows)

    async def latest_window(self) -> WindowScores | None:
        """The most recently computed window scores, if any."""
        rows = await self._one(Query(
            WINDOW_SCORES.select(()) + " WHERE computed_at = "
            "(SELECT MAX(computed_at) FROM window_scores) ORDER BY hotkey"
        ))
        return WindowScores(read_time(rows[0][0]), _window(rows)) if rows else None

    # ---- report ---------------------------------------------------------------------------

    async def miner_table(self, run_id: str) -> list[MinerRow]:
        """The per-miner report of a run: every miner saved with the run or with any result."""
        tables = (RUN_MINERS, DAY1_RESULTS, ERA5_RESULTS, ERA5_LEADS, STAGE_FAILURES,
                  OVERALL_SCORES, RUN_VALUES)
        queries = [Query(t.select(("run_id",), ("hotkey",)), (run_id,)) for t in tables]
        queries += [Query(f"SELECT DISTINCT hotkey FROM {t} WHERE run_id = ?", (run_id,))
                    for t in ("era5_variables", "field_metrics")]
        miners_, day1s, era5s, leads, failures, overall, values, *others = (
            await self._db.read(queries)
        )
        found: dict[str, MinerResults] = {}

        def miner(hotkey: SqlValue) -> MinerResults:
            return found.setdefault(str(hotkey), MinerResults(str(hotkey)))

        for rows in others:
            for row in rows:
                miner(row[0])
        for row in miners_:
            miner(row[1]).uid = None if row[2] is None else read_int(row[2])
        for row in day1s:
            miner(row[1]).day1 = _decode(DAY1_RESULTS, row, lambda r: codec.decode_day1(r, ()))
        for row in era5s:
            miner(row[1]).era5 = _decode(ERA5_RESULTS, row, lambda r: codec.decode_era5(r, ()))
        for row in leads:
            lead = _decode(ERA5_LEADS, row, codec.decode_lead)
            miner(row[1]).leads[lead.lead_hours] = lead.value
        for row in failures:
            miner(row[1]).failures.append(_decode(STAGE_FAILURES, row, codec.decode_failure))
        for row in overall:
            miner(row[1]).overall = _decode(OVERALL_SCORES, row, codec.decode_overall)
        for row in values:
            miner(row[1]).run_value = _decode(RUN_VALUES, row, codec.decode_run_value)
        for results in found.values():
            results.failures.sort(key=lambda f: STAGES.index(f.stage))
        return miner_table(found)

    # ---- lifecycle ------------------------------------------------------------------------

    async def close(self) -> None:
        """Release the database; further calls raise ResultsError. Idempotent."""
        await self._db.close()

    async def __aenter__(self) -> ResultsStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # ---- internals ------------------------------------------------------------------------

    async def _one(self, query: Query) -> list[Row]:
        return (await self._db.read([query]))[0]

    @staticmethod
    def _miner(run_id: str, hotkey: str) -> tuple[str, str]:
        return _key(run_id, "run_id"), _key(hotkey, "hotkey")

    @staticmethod
    def _lock(run_id: str, hotkey: str) -> str:
        return "miner:" + json.dumps([run_id, hotkey])


def _unique(keys: Sequence[object], what: str) -> None:
    seen: set[object] = set()
    for key in keys:
        if key in seen:
            raise ValueError(f"{what} {key!r} is given twice")
        seen.add(key)


def _decode(table: Table, row: Row, decode: Callable[[Row], _T]) -> _T:
    return codec.decode_rows(table, [row], decode)[0]


def _window(rows: list[Row]) -> dict[str, float]:
    return {str(row[1]): read_real(row[2]) for row in rows}

