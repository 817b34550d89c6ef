"""Print a shadow comparison report: a summary table, then the paths that disagreed."""

from __future__ import annotations

from gaia.cli.tables import print_table
from gaia.validator.migration.report import RouteTiming, ShadowReport

TOP_PATHS = 20


def print_shadow_report(report: ShadowReport, title: str = "Shadow comparison") -> None:
    if report.compared == 0:
        print("No shadow comparisons recorded.")
        return
    print_table(title, ("measure", "value"), _summary_rows(report))
    if report.with_mismatches == 0:
        print(f"0 mismatches in {_comparisons(report.compared)}")
        return
    shown = report.paths[:TOP_PATHS]
    rows = [
        (
            summary.path,
            summary.count,
            _or_dash(summary.max_abs_diff),
            _or_dash(summary.max_rel_diff),
            summary.example.legacy,
            summary.example.new,
        )
        for summary in shown
    ]
    columns = ("path", "mismatches", "max abs diff", "max rel diff", "legacy (e.g.)", "new (e.g.)")
    print_table(f"Mismatches by path (top {len(shown)} of {len(report.paths)})", columns, rows)
    noun = "mismatch" if report.mismatch_total == 1 else "mismatches"
    print(
        f"{report.mismatch_total} {noun} in {report.with_mismatches} of "
        f"{_comparisons(report.compared)}"
    )


def _comparisons(count: int) -> str:
    return f"{count} comparison" if count == 1 else f"{count} comparisons"


def _summary_rows(report: ShadowReport) -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = [
        ("comparisons", report.compared),
        ("with mismatches", report.with_mismatches),
        ("shadow failures", report.shadow_failures),
    ]
    for label, timing in (("legacy", report.legacy), ("new", report.new)):
        rows.extend(_timing_rows(label, timing))
    rows.append(("speedup (legacy p50 / new p50)", _or_dash(report.speedup)))
    rows.append(("paired speedup (median ratio)", _or_dash(report.paired_speedup)))
    return rows


def _timing_rows(label: str, timing: RouteTiming | None) -> list[tuple[str, object]]:
    if timing is None:
        return [(f"{label} runs", 0)]
    return [
        (f"{label} runs", timing.runs),
        (f"{label} p50 (s)", timing.p50),
        (f"{label} p95 (s)", timing.p95),
    ]


def _or_dash(value: float | None) -> object:
    return "-" if value is None else value
