"""A throwaway PostgreSQL cluster (``initdb`` + ``pg_ctl``) on a free loopback port.

The cluster lives in a temporary directory with ``trust`` authentication, UTF8 and the C locale.
PostgreSQL refuses to run as root, so when the tests run as root the cluster is created and run
by an unprivileged OS user (``gaia-pg`` by default, created with ``useradd`` if missing) through
``runuser``; its directory is then made under /tmp and owned by that user.

``fsync`` defaults to off for speed. That keeps restart tests honest for what they test: a server
process that is stopped, or killed with ``pg_ctl stop -m immediate``, loses no committed
transaction either way, because committed WAL is already in the OS page cache. Only an OS crash or
power loss, which no test here simulates, would need fsync on. Pass ``fsync=True`` to keep it.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .binaries import find_binary
from .ports import LOOPBACK, free_port
from .throwaway import ThrowawayServer

DEFAULT_OS_USER = "gaia-pg"
SUPERUSER = "postgres"
DATABASE = "gaia"
COMMAND_TIMEOUT_SECONDS = 120.0
_PORT_ATTEMPTS = 3
_PG_GLOB = "/usr/lib/postgresql/*/bin/"
_INSTALL_HINT = "install PostgreSQL server binaries, e.g. `apt-get install postgresql`"


class PostgresServerError(RuntimeError):
    """A PostgreSQL command failed; the message carries its output and the end of the log."""


class PostgresServer(ThrowawayServer):
    """One PostgreSQL cluster owned by the test run.

    ``start()`` runs ``initdb`` the first time, starts the server and creates database ``gaia``.
    ``restart()`` reuses the same port and data directory. ``close()`` stops the server and
    deletes the directory. Usable as a context manager.
    """

    host = LOOPBACK
    superuser = SUPERUSER
    database = DATABASE

    def __init__(
        self,
        *,
        fsync: bool = False,
        settings: Mapping[str, str] | None = None,
        os_user: str | None = None,
    ) -> None:
        initdb = find_binary("initdb", [_PG_GLOB + "initdb"], install_hint=_INSTALL_HINT)
        self.bin_dir = Path(os.path.realpath(initdb)).parent  # /usr/local/bin links into it
        for tool in ("pg_ctl", "psql"):
            if not (self.bin_dir / tool).is_file():
                raise PostgresServerError(f"`{tool}` is missing beside {initdb}; {_INSTALL_HINT}")
        self.fsync = fsync
        self.settings = dict(settings or {})
        for key, value in self.settings.items():
            if not key.replace("_", "").replace(".", "").isalnum():
                raise ValueError(f"bad PostgreSQL setting name {key!r} (value {value!r})")
        self.os_user = _choose_os_user(os_user)
        parent = "/tmp" if self.os_user is not None else None
        self.base_dir = Path(tempfile.mkdtemp(prefix="gaia-pg-", dir=parent))
        self.data_dir = self.base_dir / "data"
        if self.os_user is not None:
            account = pwd.getpwnam(self.os_user)
            os.chown(self.base_dir, account.pw_uid, account.pw_gid)
        self.port = 0
        self.init_seconds = 0.0
        self.startup_seconds = 0.0
        self._running = False
        self._database_created = False

    @property
    def url(self) -> str:
        """``postgresql://postgres@127.0.0.1:PORT/gaia``."""
        return self.url_for(self.database)

    def url_for(self, database: str) -> str:
        """URL of ``database`` on this server, as the superuser."""
        if self.port == 0:
            raise PostgresServerError("PostgreSQL has not been started; call start() first")
        return f"postgresql://{self.superuser}@{self.host}:{self.port}/{database}"

    @property
    def running(self) -> bool:
        return self._running

    def start(self) -> None:
        """initdb on first use, start, wait until it accepts connections, create ``gaia``."""
        if self._running:
            return
        if not (self.data_dir / "PG_VERSION").exists():
            began = time.monotonic()
            self._initdb()
            self.init_seconds = time.monotonic() - began
        keep_port = self.port != 0
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if not keep_port:
                self.port = free_port()
            began = time.monotonic()
            try:
                self._pg_ctl(["start", "-w", "-t", "60", "-l", str(self._log_path), "-o",
                              self._server_options()])
            except PostgresServerError:
                if keep_port or attempt == _PORT_ATTEMPTS or not self._port_was_taken():
                    raise
                continue
            self.startup_seconds = time.monotonic() - began
            self._running = True
            break
        if not self._database_created:
            self.psql(f'CREATE DATABASE "{self.database}"')
            self._database_created = True

    def stop(self, *, mode: str = "fast") -> None:
        """``pg_ctl stop -m MODE``: ``fast`` is clean; ``immediate`` is a crash (WAL replay)."""
        if mode not in ("smart", "fast", "immediate"):
            raise ValueError(f"stop mode must be smart, fast or immediate, got {mode!r}")
        if not self._running:
            return
        self._pg_ctl(["stop", "-w", "-t", "60", "-m", mode])
        self._running = False

    def kill(self) -> None:
        """Crash-stop (``immediate``): no checkpoint; the next start replays the WAL."""
        self.stop(mode="immediate")

    def restart(self, *, crash: bool = False) -> None:
        """Stop (``immediate`` when ``crash``) and start again on the same port and data."""
        self.stop(mode="immediate" if crash else "fast")
        self.start()

    def close(self) -> None:
        """Stop the server and delete its directory."""
        try:
            self.stop(mode="immediate")
        finally:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def psql(self, sql: str, database: str = "postgres") -> str:
        """Run one SQL command with ``psql`` as the superuser and return its unaligned output."""
        command = [str(self.bin_dir / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                   "-h", self.host, "-p", str(self.port), "-U", self.superuser, "-d", database,
                   "-c", sql]
        return self._run(command, as_os_user=False)

    def _initdb(self) -> None:
        command = [str(self.bin_dir / "initdb"), "-D", str(self.data_dir), "-U", self.superuser,
                   "--auth=trust", "--encoding=UTF8", "--locale=C"]
        if not self.fsync:
            command.append("--no-sync")
        self._run(command, as_os_user=True)

    def _server_options(self) -> str:
        options = {
            "listen_addresses": self.host,
            "fsync": "on" if self.fsync else "off",
            "unix_socket_directories": str(self.base_dir),
        }
        options.update(self.settings)
        words = ["-p", str(self.port)]
        for key, value in options.items():
            words += ["-c", f"{key}={value}"]
        return shlex.join(words)

    def _pg_ctl(self, arguments: Sequence[str]) -> None:
        command = [str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), *arguments]
        self._run(command, as_os_user=True)

    def _run(self, command: Sequence[str], *, as_os_user: bool) -> str:
        full = list(command)
        if as_os_user and self.os_user is not None:
            full = ["runuser", "-u", self.os_user, "--", *full]
        environ = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
        environ.update(LC_ALL="C", LANG="C")
        try:
            finished = subprocess.run(
                full, cwd=self.base_dir, env=environ, capture_output=True, text=True,
                timeout=COMMAND_TIMEOUT_SECONDS, check=False, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as error:
            raise PostgresServerError(
                f"timed out: {shlex.join(full)}\n{self._log_tail()}"
            ) from error
        if finished.returncode != 0:
            raise PostgresServerError(
                f"exit {finished.returncode}: {shlex.join(full)}\n{finished.stdout}"
                f"{finished.stderr}\n--- server log ---\n{self._log_tail()}"
            )
        return finished.stdout

    @property
    def _log_path(self) -> Path:
        return self.base_dir / "postgres.log"

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return os.linesep.join(text.splitlines()[-lines:])

    def _port_was_taken(self) -> bool:
        return "Address already in use" in self._log_tail()


def _choose_os_user(requested: str | None) -> str | None:
    """The account to run PostgreSQL as: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        if requested is not None and requested != pwd.getpwuid(os.geteuid()).pw_name:
            raise PostgresServerError(f"cannot run PostgreSQL as {requested!r} without root")
        return None
    name = requested or DEFAULT_OS_USER
    if shutil.which("runuser") is None:
        raise PostgresServerError("running as root needs `runuser` (util-linux) to drop to "
                                  f"user {name!r}, and it is not installed")
    _ensure_account(name)
    return name


def _ensure_account(name: str) -> None:
    """Create system user ``name`` (no home, no login shell) unless it exists."""
    try:
        pwd.getpwnam(name)
        return
    except KeyError:
        pass
    created = subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, check=False,
    )
    try:
        pwd.getpwnam(name)  # another test session may have created it meanwhile
    except KeyError:
        raise PostgresServerError(
            f"could not create OS user {name!r} to run PostgreSQL (it refuses root): "
            f"{created.stderr.strip()}"
        ) from None
