"""Run the benchmark modules and print their tables: ``python -m benchmarks [name ...]``."""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import platform
import sys
import time
import traceback
from pathlib import Path

from gaia.cli.tables import print_table

MODULES = [
    "queue_memory",
    "queue_sqlite",
    "queue_postgres",
    "queue_redis",
    "process_pool",
    "weather_scoring",
    "weather_loading",
    "weather_job",
]

Row = dict[str, str | float]


def run_module(name: str) -> list[Row]:
    module = importlib.import_module(f"benchmarks.{name}")
    result = module.run()
    if inspect.isawaitable(result):
        result = asyncio.run(result)
    return list(result)


def main(argv: list[str]) -> int:
    names = argv or MODULES
    unknown = [name for name in names if name not in MODULES]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(MODULES)}")
        return 2
    machine = (
        f"{platform.machine()} {platform.processor() or ''} python {platform.python_version()}"
    )
    print(f"machine: {machine.strip()}")
    results: dict[str, list[Row]] = {}
    failed = []
    for name in names:
        started = time.monotonic()
        try:
            rows = run_module(name)
        except Exception:
            traceback.print_exc()
            failed.append(name)
            continue
        results[name] = rows
        columns = list(dict.fromkeys(key for row in rows for key in row))
        table = [[row.get(column, "") for column in columns] for row in rows]
        print_table(f"{name} ({time.monotonic() - started:.0f} s)", columns, table)
    out = Path(".bench/results.json")
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"machine": machine, "results": results}, indent=2))
    if failed:
        print(f"failed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
