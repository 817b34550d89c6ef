"""``gaia``: the command line. Each subcommand lives in its own module; this one dispatches."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Sequence
from pathlib import Path

from gaia import __version__

# name -> (module, help). Each module has add_arguments(parser) and async run(args) -> int.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": ("gaia.cli.demo", "run demo jobs of two types through the worker pool"),
    "worker": ("gaia.cli.worker", "serve a queue until SIGTERM (drain, then exit 0)"),
    "weather": ("gaia.cli.weather", "score weather forecasts: run, score, synth, compare"),
    "admin": ("gaia.cli.admin", "inspect a queue: stats, jobs, stuck; requeue or cancel jobs"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gaia", description="Gaia validator execution core")
    parser.add_argument("--log-level", default="WARNING", help="DEBUG, INFO, WARNING (default)")
    parser.add_argument("--plain-logs", action="store_true", help="text logs instead of JSON")
    parser.add_argument("--log-file", type=Path, help="write logs here instead of stderr")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.add_parser("version", help="print the version")
    for name, (module_name, help_text) in COMMANDS.items():
        command = sub.add_parser(name, help=help_text)
        importlib.import_module(module_name).add_arguments(command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "version":
        print(f"gaia {__version__}")
        return 0
    from gaia.shared.logs import configure_logging

    module = importlib.import_module(COMMANDS[args.command][0])
    log_file = args.log_file or getattr(module, "DEFAULT_LOG_FILE", None)
    configure_logging(args.log_level, json_lines=not args.plain_logs, file=log_file)
    code: int = asyncio.run(module.run(args))
    return code


if __name__ == "__main__":
    sys.exit(main())
