"""``gaia weather``: synthetic runs, scoring runs on the new architecture, shadow reports.

    gaia weather run              # the main job: synth a run on first use, score it, report
    gaia weather synth --out DIR  # write a synthetic run
    gaia weather score --run DIR  # score any run on disk in the same layout
    gaia weather score --run DIR --enqueue-only  # hand its jobs to `gaia weather worker`s
    gaia weather worker           # serve weather jobs of any run until SIGTERM, then drain
    gaia weather compare          # the shadow comparison report of the two scorers

Heavy modules (numpy, xarray) are imported inside the actions, never at CLI start-up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gaia.cli.progress import ProgressReporter
from gaia.cli.tables import print_table

if TYPE_CHECKING:
    from gaia.validator.adapters.weather.serving import WeatherWorker, WorkerSettings

DATA_DIR = Path("data/weather")
DEFAULT_LOG_FILE = DATA_DIR / "logs" / "weather.jsonl"
STAGE_TYPES = frozenset({"weather.day1", "weather.era5"})
WORKER_DESCRIPTION = """\
Serve weather scoring jobs (day-1, ERA5, aggregation) of any run from the queue until SIGTERM
or SIGINT, then drain (running jobs get --drain seconds to finish) and exit 0. Start as many as
you like, on one machine or many, on one shared queue (PostgreSQL, Redis, or SQLite on one
machine) and one shared results store; hand them runs with
`gaia weather score --run DIR --enqueue-only`.

Jobs name their run directory by its absolute path on the producer's machine: every worker must
see the run directories at that same path (shared storage). A job whose run directory a worker
cannot see fails with an error naming the path, is retried under its job's bounded policy, and
is dead-lettered with that error when its attempts are used up.

Defaults: the queue, results and shadow-log files in --data that `gaia weather run|score` use,
so a worker beside a `gaia weather score` on one machine serves the same queue."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="data directory")
    # --data is also accepted after the action (`gaia weather compare --data DIR`); SUPPRESS
    # keeps an action that was not given it from resetting the value given before the action.
    after = argparse.ArgumentParser(add_help=False)
    after.add_argument("--data", type=Path, default=argparse.SUPPRESS, help="data directory")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, help: str, description: str | None = None) -> argparse.ArgumentParser:
        return actions.add_parser(
            name,
            parents=[after],
            help=help,
            description=description,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )

    run = action("run", help="synthesise a run on first use, score it, report")
    _scoring_options(run)
    run.add_argument("--seed", type=int, default=7)
    run.add_argument("--miners", type=int, default=16)
    run.add_argument("--resolution", type=float, default=1.5)
    score = action("score", help="score a run directory")
    score.add_argument("--run", type=Path, required=True, dest="run_dir")
    score.add_argument(
        "--enqueue-only",
        action="store_true",
        help="plan and enqueue the run's jobs, then return at once: `gaia weather worker` "
        "processes score them (a repeat while they are queued or running adds nothing)",
    )
    _scoring_options(score)
    worker = action(
        "worker",
        help="serve weather jobs of any run until SIGTERM (drain, then exit 0)",
        description=WORKER_DESCRIPTION,
    )
    _scoring_options(worker)
    worker.add_argument("--lease", type=float, default=30.0, help="lease seconds (default 30)")
    worker.add_argument("--drain", type=float, default=30.0, help="drain deadline seconds")
    worker.add_argument(
        "--metrics-port",
        type=int,
        help="serve Prometheus metrics on 127.0.0.1:PORT (needs the metrics extra)",
    )
    synth = action("synth", help="write a synthetic run")
    synth.add_argument("--out", type=Path, required=True)
    synth.add_argument("--seed", type=int, default=7)
    synth.add_argument("--miners", type=int, default=16)
    synth.add_argument("--resolution", type=float, default=1.5)
    action("compare", help="report the shadow comparison of the two scorers")


def _scoring_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--queue", help="queue URL (default: sqlite in the data directory)")
    parser.add_argument("--results", help="results URL (default: sqlite in the data directory)")
    parser.add_argument(
        "--rollout",
        default="new=1,shadow=on",
        help="fraction on the fast scorer and shadow mode, e.g. new=0.5,shadow=on",
    )
    parser.add_argument("--concurrency", type=int, default=4, help="worker pool slots")
    parser.add_argument("--process-workers", type=int, default=2, help="process pool children")
    parser.add_argument(
        "--memory-budget-mb",
        type=float,
        help="memory the process pool's children may use together (default: derived)",
    )


async def run(args: argparse.Namespace) -> int:
    args.data.mkdir(parents=True, exist_ok=True)
    return await ACTIONS[args.action](args)


async def synth_action(args: argparse.Namespace) -> int:
    layout = await asyncio.to_thread(_synthesise, args.out, args.seed, args.miners, args.resolution)
    print(f"wrote a synthetic run to {layout}")
    return 0


def _synthesise(out: Path, seed: int, miners: int, resolution: float) -> Path:
    from gaia.tasks.weather.synth import generate_run

    generate_run(out, seed=seed, miners=miners, resolution=resolution)
    return out


async def run_action(args: argparse.Namespace) -> int:
    run_dir = args.data / f"run-seed{args.seed}-{args.resolution:g}deg-{args.miners}miners"
    if not (run_dir / "run.json").exists():
        print(
            f"generating a synthetic run ({args.miners} miners at {args.resolution:g} deg) "
            f"into {run_dir} ...",
            flush=True,
        )
        await asyncio.to_thread(_synthesise, run_dir, args.seed, args.miners, args.resolution)
    args.run_dir = run_dir
    return await score_and_report(args)


def _queue_url(args: argparse.Namespace) -> str:
    return str(args.queue or f"sqlite:///{args.data / 'queue.db'}")


def _settings(args: argparse.Namespace, **extra: float) -> WorkerSettings:
    from gaia.validator.adapters.weather.serving import WorkerSettings

    return WorkerSettings(
        queue_url=_queue_url(args),
        results_url=args.results or f"sqlite:///{args.data / 'results.db'}",
        shadow_log=args.data / "shadow.db",
        rollout=args.rollout,
        concurrency=args.concurrency,
        process_workers=args.process_workers,
        memory_budget_mb=args.memory_budget_mb,
        **extra,
    )


async def score_action(args: argparse.Namespace) -> int:
    if not (args.run_dir / "run.json").is_file():
        raise SystemExit(
            f"--run {args.run_dir}: not a scoring run (no run.json there); "
            f"`gaia weather synth --out DIR` writes one"
        )
    if args.enqueue_only:
        return await enqueue_action(args)
    return await score_and_report(args)


async def score_and_report(args: argparse.Namespace) -> int:
    from gaia.validator.adapters.weather.runner import score_run

    settings = _settings(args)
    info = json.loads((args.run_dir / "run.json").read_text())
    reporter = ProgressReporter(2 * len(info["miners"]), "scoring jobs", types=STAGE_TYPES)
    with reporter:
        rows = await score_run(args.run_dir, settings, [reporter])
    print_miner_table(info["run_id"], rows, _grades(args.run_dir))
    print(
        f"{reporter.finished} stage jobs in {reporter.elapsed:.1f} s; "
        f"shadow comparisons: gaia weather compare --data {args.data}"
    )
    return 0


async def enqueue_action(args: argparse.Namespace) -> int:
    from gaia.validator.adapters.weather.runner import enqueue_run, read_run
    from gaia.validator.queues import open_queue

    run_dir, info = await read_run(args.run_dir)
    queue = await open_queue(_queue_url(args))
    try:
        stored, new = await enqueue_run(queue, run_dir, info)
    finally:
        await queue.close()
    print(
        f"enqueued run {info.run_id} on {_queue_url(args)}: {new} new stage jobs, "
        f"{len(stored) - new} already queued or running\n"
        f"every `gaia weather worker` serving it must see {run_dir} at this path"
    )
    return 0


def _grades(run_dir: Path) -> dict[str, str]:
    expected = run_dir / "expected.json"
    if not expected.exists():
        return {}
    miners = json.loads(expected.read_text()).get("miners", {})
    return {hotkey: str(entry.get("grade", "")) for hotkey, entry in miners.items()}


def print_miner_table(run_id: str, rows: Sequence[object], grades: dict[str, str]) -> None:
    from gaia.tasks.weather.results import MinerRow
    from gaia.tasks.weather.variables import ERA5_LEAD_HOURS

    def number(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    table = []
    for row in rows:
        assert isinstance(row, MinerRow)
        day1 = number(row.day1_score) + (
            "" if row.day1_pass is None else (" pass" if row.day1_pass else " fail")
        )
        leads = [number(row.era5_leads.get(lead)) for lead in ERA5_LEAD_HOURS]
        status = (
            row.status
            if row.reason is None or row.reason in row.status
            else (f"{row.status}: {row.reason}")
        )
        table.append(
            [
                row.uid if row.uid is not None else "-",
                row.hotkey[:12],
                grades.get(row.hotkey, ""),
                day1,
                *leads,
                number(row.era5_average),
                number(row.overall),
                number(row.run_value),
                status[:70],
            ]
        )
    columns = [
        "uid",
        "hotkey",
        "grade",
        "day-1",
        *(f"{lead}h" for lead in ERA5_LEAD_HOURS),
        "ERA5",
        "overall",
        "value",
        "status",
    ]
    print_table(f"run {run_id}", columns, table)


async def worker_action(args: argparse.Namespace) -> int:
    from gaia.validator.adapters.weather.serving import serve

    settings = _settings(args, lease_seconds=args.lease, drain_seconds=args.drain, idle_wait=1.0)

    def announce(worker: WeatherWorker) -> None:
        print(
            f"weather worker {worker.pool.worker_id} serving {settings.queue_url} "
            f"(results {settings.results_url}); SIGTERM or Ctrl-C drains and stops",
            flush=True,
        )

    await serve(settings, metrics_port=args.metrics_port, ready=announce)
    print("weather worker stopped", flush=True)
    return 0


async def compare_action(args: argparse.Namespace) -> int:
    from gaia.cli.shadow_report import print_shadow_report
    from gaia.validator.migration import ShadowLog, summarise

    path = args.data / "shadow.db"
    if not path.exists():
        print(f"no shadow log at {path}: score a run with --rollout ...,shadow=on first")
        return 1
    async with ShadowLog(path) as log:
        report = summarise(await log.records())
    print_shadow_report(report)
    return 0 if report.clean else 4


ACTIONS: dict[str, Callable[[argparse.Namespace], Awaitable[int]]] = {
    "run": run_action,
    "score": score_action,
    "worker": worker_action,
    "synth": synth_action,
    "compare": compare_action,
}
