"""Print a table with rich when available, else as aligned plain text."""

from __future__ import annotations

import os
from collections.abc import Sequence


def print_table(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        _print_plain(title, columns, rows)
        return
    table = Table(title=title)
    for index, column in enumerate(columns):
        table.add_column(column, justify="left" if index == 0 else "right")
    for row in rows:
        table.add_row(*(format_cell(cell) for cell in row))
    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        # A log or a pipe has no width: give it the whole table rather than squeeze every
        # cell to "…" in the default 80 columns.
        natural = console.measure(table, options=console.options.update_width(10_000))
        console = Console(width=max(80, natural.maximum))
    console.print(table)


def format_cell(cell: object) -> str:
    if isinstance(cell, float):
        return f"{cell:.4g}" if abs(cell) < 1000 else f"{cell:,.0f}"
    return str(cell)


def _print_plain(title: str, columns: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [list(columns)] + [[format_cell(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(columns))]
    print(title)
    for row in cells:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths, strict=True)))
