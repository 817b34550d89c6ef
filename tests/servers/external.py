"""Servers named by URL in the environment, used instead of starting throwaway ones."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import NoReturn, Protocol
from urllib.parse import urlsplit, urlunsplit

from .policy import server_unavailable

REDIS_URL_VARIABLE = "GAIA_TEST_REDIS_URL"
POSTGRES_URL_VARIABLE = "GAIA_TEST_POSTGRES_URL"


class ServerHandle(Protocol):
    """What the session fixtures ``redis_server`` and ``postgres_server`` give a test."""

    @property
    def url(self) -> str: ...

    def restart(self, *, crash: bool = False) -> None: ...

    def stop(self) -> None: ...


class ExternalServer:
    """A server the environment points at. Tests use it but cannot stop or restart it.

    ``restart()`` and ``stop()`` apply the skip/fail policy: a test that must restart the broker
    is skipped on a workstation and fails under CI, where it has to run for real.
    """

    def __init__(self, url: str, variable: str) -> None:
        self._url = url
        self.variable = variable

    @property
    def url(self) -> str:
        return self._url

    def restart(self, *, crash: bool = False) -> None:
        self._cannot("restart")

    def stop(self) -> None:
        self._cannot("stop")

    def _cannot(self, action: str) -> NoReturn:
        server_unavailable(
            f"cannot {action} the external server given by {self.variable}; "
            f"unset it to let the tests start their own"
        )


def external_url(variable: str, environ: Mapping[str, str] | None = None) -> str | None:
    """The URL in ``variable`` if set and non-empty, else None."""
    env = os.environ if environ is None else environ
    value = env.get(variable, "").strip()
    return value or None


def with_path(url: str, path: str) -> str:
    """``url`` with its path replaced by ``/path`` (a Redis db number or a database name)."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + path, parts.query, parts.fragment))
