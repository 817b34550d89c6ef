"""Finding server executables, and the error raised when they are not installed."""

from __future__ import annotations

import glob
import os
import shutil
from collections.abc import Sequence


class BinaryNotFound(RuntimeError):
    """A server executable is not installed; the message says what to install."""


def find_binary(name: str, extra_globs: Sequence[str] = (), install_hint: str = "") -> str:
    """Absolute path of executable ``name`` from PATH, else from ``extra_globs`` (newest last).

    Raises ``BinaryNotFound`` naming the executable, the places searched and ``install_hint``.
    """
    on_path = shutil.which(name)
    if on_path is not None:
        return os.path.abspath(on_path)  # not realpath: redis picks its mode from argv[0]
    for pattern in extra_globs:
        for candidate in sorted(glob.glob(pattern), key=_version_order, reverse=True):
            if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
                return candidate
    searched = ", ".join(["PATH", *extra_globs])
    hint = f"; {install_hint}" if install_hint else ""
    raise BinaryNotFound(f"`{name}` not found (searched {searched}){hint}")


def _version_order(path: str) -> tuple[int, ...]:
    """Sort key that orders /usr/lib/postgresql/9.6 before /usr/lib/postgresql/16."""
    numbers = [int(part) for part in path.replace(".", "/").split("/") if part.isdigit()]
    return tuple(numbers)
