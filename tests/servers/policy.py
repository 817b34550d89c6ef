"""What a test does when a server it needs cannot be had: skip on a workstation, fail under CI.

A developer without ``redis-server`` or the PostgreSQL binaries can still run the rest of the
suite; the affected tests are skipped with a reason that says what to install or which
environment variable to set. In CI (``CI=true``, as GitHub Actions and ``.ci/run`` set it) the
same condition is a failure, so a green CI run always means every backend was exercised.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NoReturn

import pytest

CI_VARIABLE = "CI"
_TRUE_WORDS = frozenset({"true", "1", "yes"})


def running_in_ci(environ: Mapping[str, str] | None = None) -> bool:
    """True when the ``CI`` variable says ``true`` (also ``1``/``yes``, any case)."""
    env = os.environ if environ is None else environ
    return env.get(CI_VARIABLE, "").strip().lower() in _TRUE_WORDS


def server_unavailable(reason: str, environ: Mapping[str, str] | None = None) -> NoReturn:
    """Skip the current test for ``reason``; under CI fail it instead.

    Raises ``pytest.skip.Exception`` or ``pytest.fail.Exception``; never returns.
    """
    if running_in_ci(environ):
        pytest.fail(
            f"{reason} [{CI_VARIABLE}=true: every server test must run in CI, "
            "so this is a failure, not a skip]",
            pytrace=False,
        )
    pytest.skip(reason)
