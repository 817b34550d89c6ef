"""Weather jobs name their run directory by path: a worker that cannot see it says so.

Every weather job carries the absolute path of its run directory, written by the producer that
planned the run. A worker on another machine reads the same path, so every worker must see the
run directories at that path (shared storage). When a worker cannot, the job must not reach its
handler: the loaders would report a missing ``run.json`` as the miner's data error and record a
failure the miner did not cause. This middleware stops the attempt first with an error naming
the path and the host. The error is retryable under the job's own bounded policy (another worker
of the fleet, or the same one once the mount is back, may see the directory), and the job is
dead-lettered with that message when its attempts are used up.
"""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

from gaia.validator.core.job import JobError
from gaia.validator.core.outcomes import Errored, Outcome
from gaia.validator.workers.context import JobContext
from gaia.validator.workers.middleware import Call, Middleware

RUN_DIR_MISSING = "run_dir_missing"
"""The JobError kind of an attempt stopped because its run directory is not visible."""


def missing_run_directory(run_dir: str) -> str | None:
    """Why ``run_dir`` cannot be scored on this machine, or None when its run.json is there."""
    run_json = Path(run_dir) / "run.json"
    if run_json.is_file():
        return None
    what = "has no run.json" if Path(run_dir).is_dir() else "does not exist"
    return (
        f"run directory {run_dir} {what} on this worker (host {socket.gethostname()}): every "
        "weather worker must see the run directories at the path the producer enqueued "
        "(shared storage)"
    )


class RunDirectoryCheck(Middleware):
    """Errors an attempt whose payload's ``run_dir`` is not visible, before its handler runs."""

    async def __call__(self, ctx: JobContext, call_next: Call) -> Outcome:
        run_dir = ctx.job.payload.get("run_dir")
        if isinstance(run_dir, str):
            problem = await asyncio.to_thread(missing_run_directory, run_dir)
            if problem is not None:  # the logging middleware logs it with the job's fields
                return Errored(JobError(problem, kind=RUN_DIR_MISSING))
        return await call_next(ctx)
