"""A throwaway ``redis-server`` on a free loopback port, with AOF persistence and restarts.

Durability settings and what they protect against (the reason ``appendfsync`` is a parameter):

- ``always``: each write is fsynced before its reply; nothing acknowledged is lost, even by
  SIGKILL or a power loss.
- ``everysec`` (the default here, as in production): fsynced once a second. Writes normally reach
  the file before the reply, but Redis postpones the write by up to 2 s while a slow background
  fsync is still running, so SIGKILL or a power loss can lose up to about 2 s of acknowledged
  writes. A graceful stop (SIGTERM, which ``stop()``/``restart()`` send) flushes and fsyncs first
  and loses nothing.
- ``no``: the OS decides when to fsync; a graceful stop still loses nothing.

RDB snapshots are off (``save ""``): the AOF is the only persistence, so a restart test proves
the AOF path. This module needs only the standard library.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

from .binaries import find_binary
from .ports import LOOPBACK, free_port
from .throwaway import ThrowawayServer

APPENDFSYNC_CHOICES = ("always", "everysec", "no")
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
_PORT_ATTEMPTS = 3
_PING = b"*1\r\n$4\r\nPING\r\n"


class RedisServerError(RuntimeError):
    """The server did not start or stop; the message carries the end of its log."""


class RedisServer(ThrowawayServer):
    """One ``redis-server`` process owned by the test run, with its own data directory.

    ``start()`` picks a free port; ``restart()`` reuses that port and data directory, so clients
    given ``url`` before the restart reconnect to the same data. ``close()`` stops the server and
    deletes the directory. Usable as a context manager.
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        appendfsync: str = "everysec",
        config: Mapping[str, str] | None = None,
        binary: str | None = None,
    ) -> None:
        if appendfsync not in APPENDFSYNC_CHOICES:
            raise ValueError(
                f"appendfsync must be one of {', '.join(APPENDFSYNC_CHOICES)}, got {appendfsync!r}"
            )
        self.appendfsync = appendfsync
        self.extra_config = dict(config or {})
        for key, value in self.extra_config.items():
            if not key.strip() or "\n" in key or "\n" in value:
                raise ValueError(f"bad redis config entry {key!r}: {value!r}")
        self.binary = binary or find_binary(
            "redis-server", install_hint="install it with `apt-get install redis-server`"
        )
        self.data_dir = Path(tempfile.mkdtemp(prefix="gaia-redis-"))
        self.port = 0
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        """URL of logical database ``db`` on this server."""
        if self.port == 0:
            raise RedisServerError("redis server has not been started; call start() first")
        return f"redis://{self.host}:{self.port}/{db}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self.running and self._process is not None else None

    def start(self) -> None:
        """Start the server and return once it answers PING (after loading its AOF)."""
        if self.running:
            return
        keep_port = self.port != 0
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            if not keep_port:
                self.port = free_port()
            began = time.monotonic()
            try:
                self._launch_and_wait()
            except _PortTaken:
                if keep_port or attempt == _PORT_ATTEMPTS:
                    raise RedisServerError(
                        f"port {self.port} is taken by another process\n{self._log_tail()}"
                    ) from None
                continue
            self.startup_seconds = time.monotonic() - began
            return

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: Redis flushes and fsyncs the AOF), SIGKILL after a timeout."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self._process = None

    def kill(self) -> None:
        """Crash the server with SIGKILL (no shutdown work), as a broker crash would."""
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.kill()
            process.wait()
        self._process = None

    def restart(self, *, crash: bool = False) -> None:
        """Stop (or SIGKILL when ``crash``) and start again on the same port and data."""
        if crash:
            self.kill()
        else:
            self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server and delete its data directory."""
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)

    def _config_text(self) -> str:
        settings = {
            "bind": self.host,
            "port": str(self.port),
            "protected-mode": "yes",
            "dir": str(self.data_dir),
            "daemonize": "no",
            "logfile": '""',
            "appendonly": "yes",
            "appendfsync": self.appendfsync,
            "save": '""',
            "databases": "16",
        }
        settings.update(self.extra_config)
        return "".join(f"{key} {value}\n" for key, value in settings.items())

    def _launch_and_wait(self) -> None:
        config_path = self.data_dir / "redis.conf"
        config_path.write_text(self._config_text(), encoding="utf-8")
        with open(self._log_path, "ab") as log:
            self._process = subprocess.Popen(
                [self.binary, str(config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
            )
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                if "Address already in use" in self._log_tail():
                    raise _PortTaken
                raise RedisServerError(f"redis-server exited during start\n{self._log_tail()}")
            if _answers_ping(self.host, self.port):
                return
            time.sleep(0.02)
        self.kill()
        raise RedisServerError(
            f"redis-server did not answer PING within {START_TIMEOUT_SECONDS:.0f} s\n"
            f"{self._log_tail()}"
        )

    @property
    def _log_path(self) -> Path:
        return self.data_dir / "redis.log"

    def _log_tail(self, lines: int = 20) -> str:
        try:
            text = self._log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return "(no log)"
        return os.linesep.join(text.splitlines()[-lines:])


class _PortTaken(Exception):
    """The chosen port was taken between choosing it and binding it."""


def _answers_ping(host: str, port: int) -> bool:
    """True when the server replies +PONG (a LOADING error while reading the AOF is a no)."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as connection:
            connection.sendall(_PING)
            reply = connection.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG")
