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
the AOF path.

TLS mode (``tls=RedisTLS(...)``): the server listens only on a TLS port (``port 0``), so a client
that forgets TLS cannot reach it at all, and ``url`` is ``rediss://``. The certificate files are
made by the caller (the fixtures use ``trustme``). This module needs only the standard library.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .binaries import find_binary
from .ports import LOOPBACK, free_port
from .throwaway import ThrowawayServer

APPENDFSYNC_CHOICES = ("always", "everysec", "no")
AUTH_CLIENTS_CHOICES = ("no", "optional", "yes")
START_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 15.0
_PORT_ATTEMPTS = 3
_PING = b"*1\r\n$4\r\nPING\r\n"


class RedisServerError(RuntimeError):
    """The server did not start or stop; the message carries the end of its log."""


class TLSUnsupported(RedisServerError):
    """The redis-server binary was built without TLS (it refuses the ``tls-*`` settings)."""


@dataclass(frozen=True)
class RedisTLS:
    """The certificate files of a TLS-only server (PEM), and whether it wants client certificates.

    ``server_cert_file``/``server_key_file``: the server's identity, signed by ``ca_file``, which
    is also the CA client certificates must chain to. ``client_cert_file``/``client_key_file``: a
    client identity signed by the same CA; the start-up probe uses it, and so may tests.
    ``auth_clients``: redis' ``tls-auth-clients`` (``no``, ``optional`` or ``yes``).
    """

    ca_file: Path
    server_cert_file: Path
    server_key_file: Path
    client_cert_file: Path
    client_key_file: Path
    auth_clients: str = "optional"

    def __post_init__(self) -> None:
        if self.auth_clients not in AUTH_CLIENTS_CHOICES:
            raise ValueError(
                f"auth_clients must be one of {', '.join(AUTH_CLIENTS_CHOICES)}, "
                f"got {self.auth_clients!r}"
            )

    def client_context(self) -> ssl.SSLContext:
        """A client context trusting ``ca_file`` and presenting the client certificate (the
        start-up probe's; it does not check the host name, which a test may set on purpose to
        one the certificate does not name)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.check_hostname = False
        context.load_cert_chain(str(self.client_cert_file), str(self.client_key_file))
        return context


class RedisServer(ThrowawayServer):
    """One ``redis-server`` process owned by the test run, with its own data directory.

    ``start()`` picks a free port; ``restart()`` reuses that port and data directory, so clients
    given ``url`` before the restart reconnect to the same data. ``close()`` stops the server and
    deletes the directory. Usable as a context manager. With ``tls``, the server speaks only TLS.
    """

    host = LOOPBACK

    def __init__(
        self,
        *,
        appendfsync: str = "everysec",
        config: Mapping[str, str] | None = None,
        binary: str | None = None,
        tls: RedisTLS | None = None,
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
        self.tls = tls
        self.data_dir = Path(tempfile.mkdtemp(prefix="gaia-redis-"))
        self.port = 0
        self.startup_seconds = 0.0
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0`` (``rediss://`` in TLS mode)."""
        return self.url_for(0)

    def url_for(self, db: int) -> str:
        """URL of logical database ``db`` on this server."""
        if self.port == 0:
            raise RedisServerError("redis server has not been started; call start() first")
        scheme = "redis" if self.tls is None else "rediss"
        return f"{scheme}://{self.host}:{self.port}/{db}"

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
        if self.tls is not None:
            settings.update(
                {
                    "port": "0",
                    "tls-port": str(self.port),
                    "tls-cert-file": str(self.tls.server_cert_file),
                    "tls-key-file": str(self.tls.server_key_file),
                    "tls-ca-cert-file": str(self.tls.ca_file),
                    "tls-auth-clients": self.tls.auth_clients,
                }
            )
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
        probe = None if self.tls is None else self.tls.client_context()
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                self._process = None
                log_tail = self._log_tail()
                if "Address already in use" in log_tail:
                    raise _PortTaken
                if self.tls is not None and "Bad directive" in log_tail:
                    raise TLSUnsupported(
                        f"{self.binary} was built without TLS support (it refuses tls-port); "
                        f"install a redis-server built with TLS, such as Debian's\n{log_tail}"
                    )
                raise RedisServerError(f"redis-server exited during start\n{log_tail}")
            if _answers_ping(self.host, self.port, probe):
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


def _answers_ping(host: str, port: int, tls: ssl.SSLContext | None = None) -> bool:
    """True when the server replies +PONG (a LOADING error while reading the AOF is a no);
    over TLS with the ``tls`` context when given."""
    try:
        with socket.create_connection((host, port), timeout=1.0) as plain:
            connection = plain if tls is None else tls.wrap_socket(plain, server_hostname=host)
            with connection:
                connection.sendall(_PING)
                reply = connection.recv(64)
    except OSError:
        return False
    return reply.startswith(b"+PONG")
